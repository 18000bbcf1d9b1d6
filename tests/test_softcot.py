"""softcot on micro models: only the projection trains, the frozen models stay bit-identical, a
saved run holds the projection and references, and loading it reproduces its answers."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from helpers import batch_loss, logged_losses

from reasondistill import api
from reasondistill.cli import main as cli_main
from reasondistill.errors import UserError
from reasondistill.methods import get_method
from reasondistill.methods.softcot import load_lm, make_bridge, placeholder_states
from reasondistill.tasks import generate

TASK = "synthetic/coin_flip"
BASE = {"max_steps": 80, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0}
# One batch holds all 48 examples, so every logged loss is measured on the same data.
FULL_BATCH = {"max_steps": 20, "batch_size": 48, "lr": 3e-2, "checkpoint_every": 0, "log_every": 1}


def digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_spied(out, method: str, student: str, options: dict, seen: dict, training: dict = FULL_BATCH) -> dict:
    """api.train, keeping the in-memory method and models and the main model's digest before/after."""
    real = api.run_training

    def spy(method_obj, model, tokenizer, *args, **kwargs):
        seen["main_before"] = digest(model)
        summary = real(method_obj, model, tokenizer, *args, **kwargs)
        seen.update(method=method_obj, model=model, tokenizer=tokenizer, main_after=digest(model))
        return summary

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api, "run_training", spy)
        return api.train(method, TASK, out, student=student, n=48, training=training, method_options=options,
                         progress=False)


def frozen_pair(root, main_method: str, second: str) -> None:
    """The two models a soft-thought method reads: a trained micro main model in ``root/main`` and a
    barely trained mini one in ``root/<second>`` (64-d against 32-d: the bridge spans two spaces)."""
    api.train(main_method, TASK, root / "main", student="micro", n=48, training=BASE, vocab_size=320,
              progress=False)
    api.train("answer_only", TASK, root / second, student="mini", n=48, seed=1,
              training={**BASE, "max_steps": 5}, vocab_size=320, progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("softcot")
    frozen_pair(root, "pre_thinking", "assistant")
    seen: dict = {}
    record = train_spied(root / "softcot", "softcot", str(root / "main"),
                         {"assistant": str(root / "assistant"), "n_train": 8}, seen)
    return root, record, seen


def test_loss_falls_and_it_answers(run):
    root, record, _ = run
    losses = logged_losses(root / "softcot")
    assert len(losses) == FULL_BATCH["max_steps"] and losses[-1] < losses[0], losses
    metrics = api.evaluate(root / "softcot", TASK, n=8, progress=False)
    assert metrics["n"] == 8 and metrics["tokens_to_answer"] > 0
    assert metrics["trainable_params"] == record["trainable_params"]
    assert metrics["frozen_params"] == record["frozen_params"]
    assert json.loads((root / "softcot" / "metrics.json").read_text())["trainable_params"] == record["trainable_params"]
    rows = [json.loads(line) for line in (root / "softcot" / "predictions.jsonl").read_text().splitlines()]
    assert all("coin" in row["text"] for row in rows)  # the frozen main model still writes a rationale


def test_only_the_projection_trains(run):
    root, record, seen = run
    method = seen["method"]
    assert seen["main_before"] == seen["main_after"]
    assistant, _ = load_lm(str(root / "assistant"), "assistant")
    assert digest(method.second) == digest(assistant.base_model)  # frozen assistant untouched
    assert not any(p.requires_grad for p in seen["model"].parameters())
    assert record["trainable_params"] == 64 * 32 + 32  # Linear(d_assistant=64, d_main=32) with bias
    assert record["frozen_params"] == (sum(p.numel() for p in seen["model"].parameters())
                                       + sum(p.numel() for p in assistant.base_model.parameters()))
    assert record["references"] == {"main": str((root / "main").resolve()),
                                    "assistant": str((root / "assistant").resolve())}
    saved = {p.name for p in (root / "softcot").iterdir()}
    assert "method_modules.safetensors" in saved and "frozen_models.json" in saved
    assert not any(name.startswith("model") and name.endswith(".safetensors") for name in saved)


def test_loaded_run_reproduces_answers(run):
    root, _, seen = run
    examples = generate("coin_flip", 6, seed=7)
    before = seen["method"].answer(seen["model"], seen["tokenizer"], examples, batch_size=4, max_new_tokens=40)
    method, model, tokenizer, _ = api.load_run(root / "softcot")
    after = method.answer(model, tokenizer, examples, batch_size=4, max_new_tokens=40)
    assert [p.text for p in after] == [p.text for p in before]
    assert all(p.tokens_to_answer > 0 and p.seconds_to_answer > 0 for p in after)


def test_thoughts_do_not_depend_on_batching(run):
    """Left padding with positions counted over real tokens: a text's soft thoughts are the same
    alone and beside a longer text."""
    root, _, _ = run
    assistant, tok = load_lm(str(root / "assistant"), "assistant")
    short, long = "Question: a coin?", "Question: a coin is heads up. Jack flips the coin. Is it heads up?"
    with torch.no_grad():
        alone = placeholder_states(assistant.base_model, tok, [short], 4)
        batched = placeholder_states(assistant.base_model, tok, [long, short], 4)
    assert torch.allclose(alone[0], batched[1], atol=1e-5)


def test_thoughts_depend_on_the_question_and_reach_the_main_model(run):
    """Each example's soft thoughts come from its own question: different questions give different
    thoughts, a batch's thoughts are its examples' own, and the main model's loss moves when they do
    (the slots are read). Fails with question-independent thoughts (e.g. one text for the batch)."""
    from reasondistill.tasks import load_task
    from reasondistill.training import collate
    _, _, seen = run
    method, model, tokenizer = seen["method"], seen["model"], seen["tokenizer"]
    examples = load_task(TASK, "train", n=48)[:6]  # what the run trained on
    batch = collate([f for ex in examples for f in method.features(ex, tokenizer)], tokenizer.pad_token_id)
    n = method.n_slots(training=True)
    with torch.no_grad():
        batched = method.batch_thoughts(batch)
        own = torch.cat([method.thoughts([method.second_text(ex)], n) for ex in examples])
        assert torch.allclose(batched, own, atol=1e-5)
        assert (batched[0] - batched[1]).abs().max() > 1e-3 * batched.abs().max()
    vectors = batched.clone().requires_grad_(True)
    batch_loss(method, model, {**batch, "vectors": vectors})["loss"].backward()
    assert vectors.grad.abs().sum() > 0  # the main model reads the slots the thoughts fill


def test_mlp_projection_starts_at_the_main_embedding_scale():
    """The MLP option maps into the main model's width, and a fresh projection's output is about as
    large as a token embedding (std ``scale``), so untrained thoughts do not swamp the prompt."""
    torch.manual_seed(0)
    states = torch.nn.functional.layer_norm(torch.randn(64, 8, 48), (48,))  # like final-norm states
    for kind in ("linear", "mlp"):
        out = make_bridge(48, 32, kind, 0.02)(states)
        assert out.shape == (64, 8, 32)
    assert 0.01 < make_bridge(48, 32, "linear", 0.02)(states).std().item() < 0.04


def test_user_mistakes_are_one_line_errors(run, tmp_path, capsys):
    root, _, _ = run
    examples = generate("coin_flip", 4, seed=0)
    model, tok = load_lm(str(root / "main"), "main")
    with pytest.raises(UserError, match="--assistant"):
        get_method("softcot").prepare(examples, tok, model)
    with pytest.raises(UserError, match="must be a trained model"):
        get_method("softcot", assistant="micro").prepare(examples, tok, model)
    with pytest.raises(UserError, match="n_infer"):
        get_method("softcot", n_infer=0)
    with pytest.raises(UserError, match="projection"):
        get_method("softcot", projection="conv")
    fresh, fresh_tok = load_lm(str(root / "main"), "main")
    fresh.name_or_path = ""  # as a model built in memory (e.g. --student micro) has
    with pytest.raises(UserError, match="--student must be a trained model"):
        get_method("softcot", assistant=str(root / "assistant")).prepare(examples, fresh_tok, fresh)
    # The CLI flag reaches the method: the missing folder it names is reported in one line.
    code = cli_main(["train", "--method", "softcot", "--data", TASK, "--n", "8", "--student", str(root / "main"),
                     "--assistant", str(tmp_path / "no-such-model"), "--out", str(tmp_path / "run")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "it/s]" not in line]
    assert code == 2 and len(err) == 1 and "no-such-model" in err[0], err


def test_main_stage_trains_a_main_model_on_the_hints_prompt(tmp_path):
    """``stage=main`` trains the whole (fresh) student on softcot's prompt with placeholder slots, at
    both slot counts, and saves a plain model a later softcot run can freeze."""
    from reasondistill.methods.softcot import HINTS_OPEN
    examples = generate("coin_flip", 2, seed=0)
    record = api.train("softcot", TASK, tmp_path / "main", student="micro", n=48, vocab_size=320, progress=False,
                       method_options={"stage": "main", "n_train": 6, "n_infer": 2, "hints_at": "before_question"},
                       training={**BASE, "log_every": 10})
    losses = logged_losses(tmp_path / "main")
    assert losses[-1] < 0.5 * losses[0], losses
    assert "trainable_params" not in record and (tmp_path / "main" / "model.safetensors").exists()
    method, model, tokenizer, _ = api.load_run(tmp_path / "main")
    features = method.features(examples[0], tokenizer)
    pid = tokenizer.bos_token_id
    assert [f.input_ids.count(pid) for f in features] == [6, 2]  # training's and inference's slot counts
    head = tokenizer(HINTS_OPEN, add_special_tokens=False).input_ids
    assert features[0].input_ids[:len(head)] == head  # before_question: the hints line comes first
    preds = method.answer(model, tokenizer, examples, max_new_tokens=60)
    assert all("flip" in p.text for p in preds), [p.text for p in preds]
    # It is a trained main model: the bridge stage freezes it and trains only the projection.
    bridged = api.train("softcot", TASK, tmp_path / "softcot", student=str(tmp_path / "main"), n=16,
                        progress=False, training={**BASE, "max_steps": 2},
                        method_options={"assistant": str(tmp_path / "main"), "n_train": 6, "n_infer": 2,
                                        "hints_at": "before_question"})
    assert bridged["trainable_params"] == 32 * 32 + 32
    with pytest.raises(UserError, match="hints_at='before_question' there, 'after_question' here"):
        api.train("softcot", TASK, tmp_path / "mismatch", student=str(tmp_path / "main"), n=16, progress=False,
                  training={**BASE, "max_steps": 1},
                  method_options={"assistant": str(tmp_path / "main"), "n_train": 6, "n_infer": 2})


def test_stage_options_are_checked():
    with pytest.raises(UserError, match="stage.*'bridge' or 'main'"):
        get_method("softcot", stage="first")
    with pytest.raises(UserError, match="drop the assistant"):
        get_method("softcot", stage="main", assistant="some/model")
    with pytest.raises(UserError, match="hints_at"):
        get_method("softcot", hints_at="inside")
