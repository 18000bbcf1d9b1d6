"""semcot on micro models: a frozen judge (a copy of the main model's upper layers) trained first on
(rationale, condensed) pairs scores both sides of the alignment; the bridge trains alone, then the
generator joins; the alignment's gradient reaches both; the frozen main model stays bit-identical,
answers cost what answer_only's do, and a loaded run reproduces them."""

from __future__ import annotations

import pytest
import torch
from helpers import batch_loss, logged_losses
from test_softcot import BASE, FULL_BATCH, TASK, digest, frozen_pair, train_spied

from reasondistill import api
from reasondistill.errors import UserError
from reasondistill.methods import get_method
from reasondistill.methods.semcot import condensed, info_nce, main_states
from reasondistill.methods.softcot import load_lm
from reasondistill.tasks import generate, load_task
from reasondistill.training import collate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("semcot")
    frozen_pair(root, "answer_only", "generator")
    seen: dict = {}
    record = train_spied(root / "semcot", "semcot", str(root / "main"),
                         {"assistant": str(root / "generator"), "judge_steps": 30}, seen,
                         training={**FULL_BATCH, "max_steps": 40, "lr": 1e-2})
    return root, record, seen


def test_loss_falls_and_answers_cost_what_answer_only_costs(run):
    root, _, _ = run
    losses, align = logged_losses(root / "semcot"), logged_losses(root / "semcot", "align")
    assert losses[-1] < losses[0] and align[-1] < align[0], (losses, align)
    semcot = api.evaluate(root / "semcot", TASK, n=8, progress=False)
    answer_only = api.evaluate(root / "main", TASK, n=8, progress=False)
    assert semcot["answered"] >= 0.5
    assert 0 < semcot["tokens_to_answer"] <= answer_only["tokens_to_answer"] + 1


def test_main_model_frozen_generator_trained(run):
    root, record, seen = run
    method = seen["method"]
    assert seen["main_before"] == seen["main_after"]
    generator, _ = load_lm(str(root / "generator"), "generator")
    assert digest(method.second) != digest(generator.base_model)  # the generator did train
    assert record["trainable_params"] == sum(p.numel() for m in (method.second, method.bridge) for p in m.parameters())
    judge = sum(p.numel() for p in method.judge.parameters())
    assert record["frozen_params"] == sum(p.numel() for p in seen["model"].parameters()) + judge
    assert record["judge_loss_end"] < record["judge_loss_start"]
    assert set(record["references"]) == {"main", "generator"}
    assert not (root / "semcot" / "model.safetensors").exists()
    stages = logged_losses(root / "semcot", "generator_stage")
    assert stages[0] == 0.0 and stages[-1] == 1.0  # the bridge trained alone first, then with the generator


def test_judge_is_a_frozen_copy_of_the_main_models_upper_layers(run):
    """Same weights as the main model's layers from judge_start on, frozen, outside what the trainer
    optimises; trained on the pairs it tells a rationale's own condensed version from the others."""
    _, record, seen = run
    method, main = seen["method"], seen["model"]
    judge = method.judge
    assert not any(p.requires_grad for p in judge.parameters())
    assert "judge" not in method.modules()
    start = record["judge_start"]
    assert start == main.config.num_hidden_layers // 2 and len(judge.upper.layers) == record["judge_layers"]
    assert judge.upper.layers[0].mlp.up_proj.weight.shape == main.base_model.layers[start].mlp.up_proj.weight.shape
    assert record["judge_pair_accuracy"] > 0.5
    # The cached targets are the judge's reading of each rationale's main-model states.
    text = sorted(method.target_index)[3]
    with torch.no_grad():
        again = judge(*main_states(main, seen["tokenizer"], [text], start))
    assert torch.allclose(again[0], method.rationale_targets[method.target_index[text]], atol=1e-5)


def _batch(method, tokenizer, n: int = 8):
    examples = load_task(TASK, "train", n=48)[:n]  # what the run trained on
    return collate([f for ex in examples for f in method.features(ex, tokenizer)], tokenizer.pad_token_id)


def test_alignment_gradient_reaches_generator_and_bridge_through_the_judge(run):
    """The alignment term alone, backpropagated: the bridge and the generator get gradients, the
    judge and the main model none; and the term is the judge's reading of the vectors."""
    _, _, seen = run
    method, tokenizer = seen["method"], seen["tokenizer"]
    batch = _batch(method, tokenizer)
    saved = method.generator_stage
    method.generator_stage = True
    try:
        for m in (method.bridge, method.second):
            m.zero_grad()
        vectors = method.batch_thoughts(batch)
        align, _ = method.alignment_loss(vectors, batch["target_index"])
        align.mean().backward()
    finally:
        method.generator_stage = saved
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.bridge.parameters())
    generator_grads = [p.grad for p in method.second.parameters() if p.grad is not None]
    assert generator_grads and sum(float(g.abs().sum()) for g in generator_grads) > 0
    assert all(p.grad is None for p in method.judge.parameters())
    # The implicit side goes through the same judge as the rationales: 1 - cos of the two readings.
    with torch.no_grad():
        vectors = method.batch_thoughts(batch)
        implicit = method.judge(vectors, torch.ones(vectors.shape[:2], dtype=torch.long))
        align, _ = method.alignment_loss(vectors, batch["target_index"])
    expected = 1 - (implicit * method.rationale_targets[batch["target_index"]]).sum(-1).mean()
    assert torch.allclose(align.mean(), expected, atol=1e-6)


def test_bridge_stage_leaves_the_generator_untouched(run):
    """Before ``bridge_fraction`` of the steps, the generator's states carry no gradient."""
    _, _, seen = run
    method, tokenizer = seen["method"], seen["tokenizer"]
    batch = _batch(method, tokenizer)
    saved = method.generator_stage
    try:
        method.on_step(1, 100)  # bridge_fraction 0.2: step 1 of 100 is in the bridge stage
        assert not method.generator_stage
        for m in (method.bridge, method.second):
            m.zero_grad(set_to_none=True)
        batch_loss(method, seen["model"], batch)["loss"].backward()
        assert all(p.grad is None for p in method.second.parameters())
        assert all(p.grad is not None for p in method.bridge.parameters())
        method.on_step(20, 100)
        assert method.generator_stage
    finally:
        method.generator_stage = saved


def test_loaded_run_reproduces_answers(run):
    root, _, seen = run
    examples = generate("coin_flip", 6, seed=7)
    before = seen["method"].answer(seen["model"], seen["tokenizer"], examples, batch_size=4, max_new_tokens=8)
    method, model, tokenizer, _ = api.load_run(root / "semcot")
    after = method.answer(model, tokenizer, examples, batch_size=4, max_new_tokens=8)
    assert [(p.text, p.answer) for p in after] == [(p.text, p.answer) for p in before]
    assert method.n_slots(training=False) == 1 and method.n_slots(training=True) == 5


def test_condensed_reasoning(shared_data):
    [ex] = load_task(str(shared_data / "semcot" / "coin_flip" / "train_42.json"), "all", n=1, format="semcot")
    assert condensed(ex) == ex.meta["condensed_reasoning"]
    synthetic = generate("coin_flip", 1, seed=0)[0]
    assert condensed(synthetic) == "So the coin ends heads up."  # the rationale's last sentence
    # Twins (same key) are not each other's negatives.
    a = torch.nn.functional.normalize(torch.ones(2, 4), dim=-1)
    assert info_nce(a, a, torch.tensor([0, 0]), 0.1).item() == pytest.approx(0.0, abs=1e-6)


def test_bad_options():
    with pytest.raises(UserError, match="alpha"):
        get_method("semcot", alpha=2)
    with pytest.raises(UserError, match="alignment"):
        get_method("semcot", alignment="l2")
    with pytest.raises(UserError, match="k_train"):
        get_method("semcot", k_train=0)
    with pytest.raises(UserError, match="bridge_fraction"):
        get_method("semcot", bridge_fraction=1.5)


def test_main_stage_learns_the_answer_prompt_with_empty_slots(tmp_path):
    """``stage=main`` trains a fresh student on semcot's own prompt (question, K placeholder slots,
    ``Answer:``) with the answer loss alone: no generator, no judge, a plain saved model."""
    record = api.train("semcot", TASK, tmp_path / "main", student="micro", n=48, vocab_size=320, progress=False,
                       method_options={"stage": "main"}, training={**BASE, "log_every": 10})
    losses = logged_losses(tmp_path / "main")
    assert losses[-1] < losses[0] and set(logged_losses(tmp_path / "main", "ce_answer")) == set(losses)
    assert "references" not in record and (tmp_path / "main" / "model.safetensors").exists()
    method, model, tokenizer, _ = api.load_run(tmp_path / "main")
    example = generate("coin_flip", 1, seed=0)[0]
    assert [f.input_ids.count(tokenizer.bos_token_id) for f in method.features(example, tokenizer)] == [5, 1]
    metrics = api.evaluate(tmp_path / "main", TASK, n=8, progress=False)
    assert metrics["answered"] >= 0.5 and metrics["tokens_to_answer"] <= 4


def test_the_stage_travels_with_a_checkpoint():
    """A run resumed after the bridge-only share continues in the generator stage (the trainer
    saves ``state_dict`` in each checkpoint and loads it after ``prepare``)."""
    before = get_method("semcot", bridge_fraction=0.5)
    before.on_step(6, 10)
    assert before.second_learns()
    resumed = get_method("semcot", bridge_fraction=0.5)
    resumed.generator_stage = False  # what prepare() starts a run with
    resumed.load_state_dict(before.state_dict())
    assert resumed.second_learns()
