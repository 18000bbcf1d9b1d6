"""The secondary metrics: consistency always comes with its denominator, rationale similarity is
measured outside the space PST trains in (unless the user names an encoder), and the tables show
the share answered beside accuracy."""

from __future__ import annotations

import json

import pytest
import torch

from reasondistill import evaluation
from reasondistill.api import comparison_markdown
from reasondistill.evaluation import LEXICAL, rationale_similarity, rouge_l_f1, score
from reasondistill.methods import Prediction, get_method
from reasondistill.report.html import means_table
from reasondistill.tasks import generate


def test_rouge_l_f1():
    assert rouge_l_f1("The coin ends heads up.", "the coin ends HEADS up") == 1.0
    assert rouge_l_f1("a b c d", "a c d e") == pytest.approx(0.75)  # LCS a c d: 3/4 both ways
    assert rouge_l_f1("a b c d", "d c b a") == pytest.approx(0.25)  # order matters
    assert rouge_l_f1("a b", "x y") == 0.0 and rouge_l_f1("", "a") == 0.0
    assert rouge_l_f1("a b c d e f", "a b") == pytest.approx(2 * 1 * (2 / 6) / (1 + 2 / 6))


def _predictions(examples, rationales, answers):
    return [Prediction(a, f"{r}\nAnswer: {a}", r, 3, 3, 0.0, 0.0) for r, a in zip(rationales, answers)]


def test_similarity_is_lexical_by_default_and_names_its_measure(monkeypatch):
    """No encoder is loaded by default (the student-independent measure), and metrics say which."""
    def no_encoder(name):
        raise AssertionError("the default measure must not use a sentence encoder")
    monkeypatch.setattr(evaluation, "_encoder", no_encoder)
    examples = generate("coin_flip", 3, seed=0)
    preds = _predictions(examples, [examples[0].rationale, "nothing alike here", None], ["yes", "no", "no"])
    value, measure = rationale_similarity(examples, preds)
    assert measure == LEXICAL
    assert value == pytest.approx((1.0 + rouge_l_f1(examples[1].rationale, "nothing alike here")) / 2)


def test_similarity_in_a_named_encoder(monkeypatch):
    class Fake:
        def encode(self, texts):
            return torch.nn.functional.normalize(torch.tensor([[len(t), 1.0] for t in texts]), dim=-1)
    monkeypatch.setattr(evaluation, "_encoder", lambda name: Fake())
    examples = generate("coin_flip", 2, seed=0)
    preds = _predictions(examples, [examples[0].rationale, examples[1].rationale], ["yes", "no"])
    value, measure = rationale_similarity(examples, preds, "my-encoder")
    assert measure == "encoder:my-encoder" and value == pytest.approx(1.0)


def test_consistency_comes_with_the_share_of_rationales_that_conclude():
    """Four answered questions: two rationales conclude (one agreeing with the answer), two trail
    off. Consistency is 1 of 2, over half of the answered rationales."""
    examples = generate("coin_flip", 5, seed=0)
    method = get_method("pre_thinking")
    rationales = ["So the coin ends heads up.", "So the coin ends heads up.", "Ben flips the", "so it", "x"]
    answers = ["yes", "no", "yes", "no", None]  # the last is unanswered: it counts in neither
    metrics = score(method, examples, _predictions(examples, rationales, answers))
    assert metrics["answered"] == pytest.approx(0.8)
    assert metrics["consistency"] == pytest.approx(0.5)
    assert metrics["rationale_concludes"] == pytest.approx(0.5)


def _row(**kw):
    base = {"task": "t", "method": "m", "hallucination": 0.0, "seed": 0, "keep": "all", "n": 10, "accuracy": 0.0,
            "answered": 0.0, "chance": 0.5, "tokens_to_answer": 3.0, "ms_to_answer": 1.0, "tokens_total": 3.0,
            "ms_total": 1.0, "consistency": 0.87, "rationale_concludes": 0.25, "train_seconds": 1.0}
    return {**base, **kw}


def test_tables_show_answered_beside_accuracy_and_consistency_with_its_denominator():
    html = means_table([_row(method="kpod", answered=0.0), _row(method="pt", accuracy=0.9, answered=1.0)])
    head = html.split("</tr>")[0]
    assert head.index("accuracy") < head.index("answered") < head.index("chance")
    assert "consistency (concludes)" in head
    assert "0.87 (0.25)" in html
    assert "0.87" not in html.replace("0.87 (0.25)", "")  # never consistency alone
    md = comparison_markdown([_row(method="kpod", accuracy=0.0, answered=0.0)])
    assert md.splitlines()[0].startswith("| method | accuracy | answered |")
    assert "| kpod | 0.000 | 0.00 |" in md


def test_cli_eval_prints_answered_and_consistency_together(tmp_path, capsys, monkeypatch):
    from reasondistill import api
    from reasondistill.cli import main
    metrics = {"method": "m", "n": 4, "accuracy": 0.5, "answered": 0.75, "tokens_to_answer": 1.0,
               "ms_to_answer": 1.0, "tokens_total": 1.0, "ms_total": 1.0, "consistency": 1.0,
               "rationale_concludes": 0.25, "rationale_similarity": 0.3, "rationale_similarity_measure": LEXICAL}
    seen = {}

    def fake_evaluate(options):  # the CLI hands eval's checked options to api.run_evaluate
        seen.update(options.as_dict())
        return metrics
    monkeypatch.setattr(api, "run_evaluate", fake_evaluate)
    assert main(["eval", "--model", str(tmp_path), "--data", "synthetic/coin_flip",
                 "--similarity-encoder", "enc"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert seen["similarity_encoder"] == "enc"
    keys = list(shown)
    assert keys.index("answered") == keys.index("accuracy") + 1
    assert keys.index("rationale_concludes") == keys.index("consistency") + 1
    assert shown["rationale_similarity_measure"] == LEXICAL
