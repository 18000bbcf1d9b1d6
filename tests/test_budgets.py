"""``eval --think-budget``: a sweep writes one metrics row per budget (and each budget's files), the
budget bounds the thinking, adaptive takes it on its think-first route, and a student that does not
think first refuses a budget with one line."""

from __future__ import annotations

import json

import pytest

from reasondistill import api
from reasondistill.cli import main

TASK = "synthetic/coin_flip"
STEPS = {"max_steps": 30, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("budgets")
    for name in ("pre_thinking", "post_thinking"):
        api.train(name, TASK, root / name, student="micro", n=32, vocab_size=320, training=STEPS, progress=False)
    api.train("adaptive", TASK, root / "adaptive", student="micro", n=32, vocab_size=320, training=STEPS,
              method_options={"mode": "think_first", "perception_steps": 5}, progress=False)
    return root


def test_sweep_writes_one_row_per_budget(runs, capsys):
    run = runs / "pre_thinking"
    assert main(["eval", "--model", str(run), "--data", TASK, "--n", "12", "--think-budget", "0,4,none"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    rows = metrics["budgets"]
    assert [r["think_budget"] for r in rows] == [0, 4, None] and metrics["think_budget"] is None
    for r in rows:
        name = api.budget_name(r["think_budget"])
        assert (run / "budgets" / name / "predictions.jsonl").exists()
        assert json.loads((run / "budgets" / name / "metrics.json").read_text())["accuracy"] == r["accuracy"]
    zero, four, free = rows
    assert zero["forced_answer_fraction"] == 1.0  # nothing thought: the marker came first, always
    # At most N thinking tokens come before the (forced) marker; budget 0 writes the marker first.
    tok = api.load_run(run)[2]
    for n in (0, 4):
        for line in (run / "budgets" / f"budget-{n}" / "predictions.jsonl").read_text().splitlines():
            p = json.loads(line)
            thought, marker, _ = p["text"].partition("\nAnswer:")
            assert marker and len(tok(thought, add_special_tokens=False).input_ids) <= n, p["text"]
    assert free["forced_answer_fraction"] is None and four["forced_answer_fraction"] <= 1.0
    assert json.loads(capsys.readouterr().out)[0]["think_budget"] == 0


def test_adaptive_takes_the_budget_on_its_think_first_route(runs):
    m = api.evaluate(runs / "adaptive", TASK, n=8, think_budget=0, progress=False, similarity=False)
    assert m["think_first_fraction"] == 1.0 and m["forced_answer_fraction"] == 1.0


def test_answer_first_refuses_a_budget(runs, capsys):
    assert main(["eval", "--model", str(runs / "post_thinking"), "--data", TASK, "--think-budget", "8"]) == 2
    assert main(["eval", "--model", str(runs / "pre_thinking"), "--data", TASK, "--think-budget", "x"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 2 and "think-first" in err[0] and "--think-budget" in err[1]
