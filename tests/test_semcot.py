"""semcot on micro models: the generator, bridge and adapter train with a falling loss, the frozen
main model stays bit-identical, answers cost what answer_only's do, and a loaded run reproduces them."""

from __future__ import annotations

import pytest
import torch
from helpers import logged_losses
from test_softcot import BASE, FULL_BATCH, TASK, digest, frozen_pair, train_spied

from reasondistill import api
from reasondistill.errors import UserError
from reasondistill.methods import get_method
from reasondistill.methods.semcot import condensed, info_nce, train_scorer
from reasondistill.methods.softcot import load_lm
from reasondistill.models import SemanticEncoder
from reasondistill.tasks import generate, load_task


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("semcot")
    frozen_pair(root, "answer_only", "generator")
    seen: dict = {}
    record = train_spied(root / "semcot", "semcot", str(root / "main"),
                         {"assistant": str(root / "generator"), "scorer_steps": 30}, seen,
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
    trained = [method.second, method.bridge, method.adapter, method.scorer]
    assert record["trainable_params"] == sum(p.numel() for m in trained for p in m.parameters())
    encoder = SemanticEncoder().model
    assert record["frozen_params"] == (sum(p.numel() for p in seen["model"].parameters())
                                       + sum(p.numel() for p in encoder.parameters()))
    assert record["scorer_loss_end"] < record["scorer_loss_start"]
    assert set(record["references"]) == {"main", "generator", "encoder"}
    assert not (root / "semcot" / "model.safetensors").exists()


def test_loaded_run_reproduces_answers(run):
    root, _, seen = run
    examples = generate("coin_flip", 6, seed=7)
    before = seen["method"].answer(seen["model"], seen["tokenizer"], examples, batch_size=4, max_new_tokens=8)
    method, model, tokenizer, _ = api.load_run(root / "semcot")
    after = method.answer(model, tokenizer, examples, batch_size=4, max_new_tokens=8)
    assert [(p.text, p.answer) for p in after] == [(p.text, p.answer) for p in before]
    assert method.n_slots(training=False) == 1 and method.n_slots(training=True) == 5


def test_condensed_reasoning_and_scorer(shared_data):
    [ex] = load_task(str(shared_data / "semcot" / "coin_flip" / "train_42.json"), "all", n=1, format="semcot")
    assert condensed(ex) == ex.meta["condensed_reasoning"]
    synthetic = generate("coin_flip", 1, seed=0)[0]
    assert condensed(synthetic) == "So the coin ends heads up."  # the rationale's last sentence
    # The scorer's map moves rationale embeddings towards their own condensed version's.
    torch.manual_seed(0)
    full, short = torch.randn(16, 8), torch.randn(16, 8)
    keys = torch.arange(16)
    scorer, info = train_scorer(full, short, keys, 50, 0.1)
    assert info["scorer_loss_end"] < info["scorer_loss_start"]
    assert not any(p.requires_grad for p in scorer.parameters())
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


def test_main_stage_learns_the_answer_prompt_with_empty_slots(tmp_path):
    """``stage=main`` trains a fresh student on semcot's own prompt (question, K placeholder slots,
    ``Answer:``) with the answer loss alone: no generator, no encoder, a plain saved model."""
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
