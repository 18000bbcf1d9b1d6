"""adaptive: one student on both formats, a perception module that routes each question, and the
routed share in the metrics."""

from __future__ import annotations

import json

import pytest
import torch

from reasondistill import api
from reasondistill.cli import main
from reasondistill.errors import UserError
from reasondistill.evaluation import evaluate
from reasondistill.methods import ANSWER, RATIONALE, format_question, get_method
from reasondistill.methods.adaptive import fit_perception
from reasondistill.tasks import generate
from reasondistill.training import TrainConfig, train

from helpers import MICRO_TRAIN, logged_losses, micro_setup


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """adaptive trained through the API on coin flip (2 to 4 people per question), micro student."""
    out = tmp_path_factory.mktemp("adaptive")
    record = api.train("adaptive", "synthetic/coin_flip", out, student="micro", n=60, vocab_size=320,
                       training={**MICRO_TRAIN, "max_steps": 100}, progress=False)
    method, model, tok, _ = api.load_run(out)
    return out, record, method, model, tok


def test_features_are_both_formats_and_holdout_is_not_trained():
    examples, model, tok = micro_setup(n=20)
    method = get_method("adaptive", holdout=0.2)
    method.prepare(examples, tok, model)
    held = [ex for ex in examples if not method.features(ex, tok)]
    assert len(held) == 4
    ex = next(ex for ex in examples if ex not in held)
    fast, slow = method.features(ex, tok)
    assert fast.spans.index(ANSWER) < fast.spans.index(RATIONALE)  # answer first
    assert slow.spans.index(RATIONALE) < slow.spans.index(ANSWER)  # think first
    assert {w for w, s in zip(fast.weights, fast.spans) if s == RATIONALE} == {0.5}
    assert (fast.extras["think_first"], slow.extras["think_first"]) == (0, 1)
    # Both formats start with the same question text, so the question's representation is shared.
    assert tok.decode(fast.input_ids).startswith(format_question(ex) + "Answer:")
    assert tok.decode(slow.input_ids).startswith(format_question(ex) + "Rationale:")


def test_adaptive_trains_routes_and_reports_the_split(run):
    out, record, method, model, tok = run
    losses = logged_losses(out)
    assert losses[-1] < 0.7 * losses[0], losses
    assert logged_losses(out, "ce_answer_first") and logged_losses(out, "ce_think_first")
    assert record["train"]["n_features"] == 2 * 48  # 12 of 60 questions held out to label perception
    stats = json.loads((out / "adaptive_perception.json").read_text())
    assert stats == record["perception"] and stats["labelled"] == 12 and stats["labelled_on"] == "held-out"
    assert 0 <= stats["think_first_label_fraction"] <= 1 and stats["perception_fit_accuracy"] >= 0.5
    examples = generate("coin_flip", 16, seed=3)
    preds = method.answer(model, tok, examples, max_new_tokens=80)
    assert all(p.extras["mode"] in ("answer_first", "think_first") for p in preds)
    metrics = evaluate(method, model, tok, examples, max_new_tokens=80, progress=False, out_dir=out / "eval")
    assert metrics["answered"] >= 0.5
    routed = sum(p.extras["answer_first"] for p in preds) / len(preds)
    assert metrics["answer_first_fraction"] == pytest.approx(routed)
    rows = [json.loads(line) for line in (out / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [r["extras"]["mode"] for r in rows] == [p.extras["mode"] for p in preds]  # each question's route


def test_cli_eval_prints_the_routing(run, capsys):
    out = run[0]
    assert main(["eval", "--model", str(out), "--data", "synthetic/coin_flip", "--n", "8", "--out",
                 str(out / "cli-eval")]) == 0
    printed = capsys.readouterr().out
    shown = json.loads(printed[printed.index("{"):])
    assert shown["method"] == "adaptive"
    assert shown["answer_first_fraction"] + shown["think_first_fraction"] == pytest.approx(1.0)


def test_router_routes_easy_and_hard_questions_apart(run):
    """The perception module on the trained student's question states, with labels we set: think
    first on 4-person coin flips (hard), answer first on 2-person ones (easy). Fitted on 40
    questions, it must route 40 new ones both ways, mostly as labelled."""
    _, _, method, model, tok = run
    pool = [ex for ex in generate("coin_flip", 400, seed=7) if len(ex.meta["problem"]["names"]) in (2, 4)]
    easy = [ex for ex in pool if len(ex.meta["problem"]["names"]) == 2]
    hard = [ex for ex in pool if len(ex.meta["problem"]["names"]) == 4]
    train_set, test_set = easy[:20] + hard[:20], easy[20:40] + hard[20:40]
    labels = torch.tensor([len(ex.meta["problem"]["names"]) == 4 for ex in train_set])
    perception, fit = fit_perception(method.question_vectors(model, tok, train_set), labels)
    assert fit > 0.9
    saved = method.perception
    try:
        method.perception = perception
        think, seconds = method.route(model, tok, test_set)
    finally:
        method.perception = saved
    truth = [len(ex.meta["problem"]["names"]) == 4 for ex in test_set]
    assert 0.25 < sum(think) / len(think) < 0.75
    assert sum(t == y for t, y in zip(think, truth)) / len(truth) > 0.8
    assert seconds > 0


def test_perception_labels_are_the_questions_only_thinking_gets_right(monkeypatch):
    """``finish`` labels a held-out question "think first" exactly when the think-first answer is
    right and the answer-first one wrong, and fits the perception module to those labels."""
    from reasondistill.methods import Prediction, adaptive
    examples, model, tok = micro_setup(n=10)
    method = get_method("adaptive", holdout=0.5)
    method.prepare(examples, tok, model)
    held = [ex for ex in examples if not method.features(ex, tok)]
    fast_right, slow_right = [True, False, False, True, False], [True, True, False, False, True]

    def answers(rights):
        return lambda model, tok, exs, **kw: [Prediction(ex.answer if ok else "wrong", "") for ex, ok in zip(exs, rights)]
    monkeypatch.setattr(method.fast, "answer", answers(fast_right))
    monkeypatch.setattr(method.slow, "answer", answers(slow_right))
    seen = {}
    real = adaptive.fit_perception

    def spy(vectors, think, **kw):
        seen["labels"] = think.tolist()
        return real(vectors, think, **kw)
    monkeypatch.setattr(adaptive, "fit_perception", spy)
    method.finish(model, tok, examples)
    assert len(held) == 5 and seen["labels"] == [False, True, False, False, True]
    assert method.stats["think_first_label_fraction"] == pytest.approx(0.4)


def test_answers_follow_the_perception_module(run):
    """The route each question takes is the perception module's call: pushed to "think first" it
    sends every question to the think-first format, pushed the other way to answer-first."""
    _, _, method, model, tok = run
    examples = generate("coin_flip", 6, seed=11)
    last = method.perception.net[-1]
    saved = last.bias.detach().clone()
    try:
        for bias, mode in ((50.0, "think_first"), (-50.0, "answer_first")):
            with torch.no_grad():
                last.bias.fill_(bias)
            preds = method.answer(model, tok, examples, max_new_tokens=60, explain=False)
            assert {p.extras["mode"] for p in preds} == {mode}
    finally:
        with torch.no_grad():
            last.bias.copy_(saved)


def test_forced_modes_answer_first_is_shorter(run):
    _, _, _, model, tok = run
    examples = generate("coin_flip", 12, seed=5)
    cost = {}
    for mode in ("answer_first", "think_first"):
        forced = get_method("adaptive", mode=mode)
        preds = forced.answer(model, tok, examples, max_new_tokens=80, explain=False)
        assert {p.extras["mode"] for p in preds} == {mode}
        cost[mode] = sum(p.tokens_to_answer for p in preds) / len(preds)
    assert cost["answer_first"] < 0.5 * cost["think_first"]


def test_masked_thought_with_adaptive_still_learns(tmp_path):
    examples, model, tok = micro_setup(n=24)
    method = get_method("adaptive", mask_rationale=0.3)
    summary = train(method, model, tok, examples, tmp_path, TrainConfig(**{**MICRO_TRAIN, "max_steps": 50}),
                    tiny=True, progress=False)
    losses = logged_losses(tmp_path)
    assert summary["steps"] == 50 and losses[-1] < 0.7 * losses[0], losses


def test_bad_options_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="mode"):
        get_method("adaptive", mode="sometimes")
    with pytest.raises(UserError, match="holdout"):
        get_method("adaptive", holdout=1.5)
