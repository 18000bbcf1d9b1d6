"""The benchmark suites: their configs load, a task's own train/test files, the parallel GPU runner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reasondistill import UserError, compare
from reasondistill.report.grid import cells, load_config, task_slug
from reasondistill.tasks import generate, load_task

REPO = Path(__file__).resolve().parents[1]
TRAIN = {"max_steps": 6, "batch_size": 8, "lr": 1e-2, "log_every": 3, "checkpoint_every": 0}


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import _parallel
    import quality
    return quality, _parallel


def _records(path: Path, seed: int, n: int) -> Path:
    rows = ({"id": f"{path.stem}-{i}", "question": ex.question, "answer": ex.answer, "rationale": ex.rationale,
             "teacher_answer": ex.answer} for i, ex in enumerate(generate("coin_flip", n, seed=seed)))
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def test_a_task_with_its_own_train_and_test_files(tmp_path):
    train, test = _records(tmp_path / "cf_train.jsonl", 1, 24), _records(tmp_path / "cf_test.jsonl", 2, 10)
    pair = f"{train}::{test}"
    assert [e.id for e in load_task(pair, "train")] == [f"cf_train-{i}" for i in range(24)]
    assert [e.id for e in load_task(pair, "test")] == [f"cf_test-{i}" for i in range(10)]
    assert len(load_task(pair, "all")) == 34 and len(load_task(pair, "test", n=4)) == 4
    with pytest.raises(UserError, match="TRAIN_FILE::TEST_FILE"):
        load_task(f"{train}::{tmp_path / 'missing.jsonl'}", "train")
    cfg = load_config({"out": str(tmp_path / "grid"), "methods": ["post_thinking"], "student": "micro",
                       "tasks": ["cf_train.jsonl::cf_test.jsonl"], "vocab_size": 320, "training": TRAIN,
                       "explain": False}, base_dir=tmp_path)
    assert cfg["tasks"] == [pair] and task_slug(pair) == "cf_train+test"
    row = compare(cfg, progress=False, report=False)["rows"][0]
    assert row["n"] == 10 and row["n_train"] == 24  # trained on the train file, scored on the test file
    assert row["run_dir"].startswith("cf_train+test/")


def test_every_suite_config_loads_with_its_gpu_variant(bench, monkeypatch, shared_data):
    quality, _ = bench
    monkeypatch.setenv("REASONDISTILL_SHARED_DATA", str(shared_data))
    for suite in ("synthetic", "real", "long"):
        cpu, gpu = quality.suite_config(suite, False), quality.suite_config(suite, False, gpu=True)
        assert len(cpu["seeds"]) == 3 and cells(cpu)
        assert gpu["out"] == cpu["out"] + "-gpu" and gpu["student"] != cpu["student"]
        assert gpu["training"]["max_steps"] > cpu["training"]["max_steps"]
    long = quality.suite_config("long", False)
    assert all(t.split(":")[1].startswith("long") for t in long["tasks"]) and long["hallucination"] == [0.0, 0.2, 0.4]
    assert {m["name"] for m in long["methods"]} >= {"pre_thinking", "post_thinking", "pst", "adaptive"}
    assert quality.suite_config("synthetic", False)["n_test"] >= 500
    real = quality.suite_config("real", False)
    assert {"svamp_train+test", "commonsenseqa_train+test"} <= {task_slug(t) for t in real["tasks"]}
    assert real["keep"] == ["correct", "all"]


def test_parallel_runner_covers_the_grid_once_and_merges_a_report(bench, tmp_path):
    _, parallel = bench
    cfg = load_config({"out": str(tmp_path / "g"), "methods": ["answer_only", "post_thinking"], "student": "micro",
                       "tasks": ["synthetic/coin_flip", "synthetic/tracking"], "seeds": [0], "n_train": 24,
                       "n_test": 8, "vocab_size": 320, "training": TRAIN, "explain": False})
    parts = parallel.parts(cfg)
    split = [c.rel_dir for _, part in parts for c in cells(load_config(part))]
    assert sorted(split) == sorted(c.rel_dir for c in cells(cfg)) and len(parts) == 2
    results = parallel.compare_parallel(cfg, tmp_path / "g", jobs=2)
    assert results["complete"] and not results["failed_parts"]
    assert len(results["rows"]) == len(cells(cfg)) == 4
    for row in results["rows"]:
        assert (tmp_path / "g" / row["run_dir"] / "metrics.json").is_file()
    assert Path(results["report"]).is_file()
    again = parallel.compare_parallel(cfg, tmp_path / "g", jobs=2)  # finished cells are not redone
    assert [r["seconds"] for r in again["rows"]] == [r["seconds"] for r in results["rows"]]


def _row(task: str, method: str, base: str, seed: int, acc: float, ms: float, h: float = 0.0) -> dict:
    return {"task": task, "method": method, "base_method": base, "hallucination": h, "seed": seed, "keep": "all",
            "accuracy": acc, "ms_to_answer": ms, "chance": 0.5, "majority": 0.5, "run_dir": "x"}


def test_time_curve_drawn_for_long_traces_and_budgets_only(tmp_path):
    from reasondistill.report.plots import draw_all, plot_time_curve
    long = [_row("synthetic-coin_flip-long200", m, b, s, 0.6 + 0.1 * s, ms * (1 + s), h)
            for s in (0, 1) for h in (0.0, 0.4)
            for m, b, ms in (("pre_thinking", "pre_thinking", 40.0), ("pre_thinking@64", "pre_thinking", 9.0),
                             ("post_thinking", "post_thinking", 0.8))]
    png = plot_time_curve(long, tmp_path / "curve.png")
    assert png.is_file() and png.stat().st_size > 10_000
    titles = [title for title, _ in draw_all(long, tmp_path, tmp_path / "plots")]
    assert "Accuracy against time to answer, per setting" in titles
    short = [r | {"task": "synthetic-coin_flip"} for r in long if "@" not in r["method"]]
    assert plot_time_curve(short, tmp_path / "none.png") is None  # nothing to add to the trade-off plot


def test_log_axis_labels_below_one_are_plain_numbers():
    """Time-to-answer axes span 0.4 ms to 100 ms: their labels read 0.6 and 20, not 6e-01."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reasondistill.report.plots import plain_log_ticks
    fig, ax = plt.subplots()
    ax.set_xscale("log")
    ax.set_xlim(0.4, 60)
    plain_log_ticks(ax.xaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.xaxis.get_majorticklabels() + ax.xaxis.get_minorticklabels() if t.get_text()]
    plt.close(fig)
    assert {"0.6", "1", "10"} <= set(labels) and not any("e" in label for label in labels), labels


def test_long_curve_joins_each_task_run_at_one_rate(bench, tmp_path, monkeypatch, capsys):
    """bench/long_curve.py draws the separately run task columns of the long suite in one figure,
    only the asked hallucination rate's rows; a missing result file is a user error."""
    import long_curve
    files = []
    for task in ("synthetic-coin_flip-long200", "synthetic-arithmetic-long200"):
        rows = [_row(task, m, m.split("@")[0], s, 0.5, ms, h) for s in (0, 1) for h in (0.0, 0.4)
                for m, ms in (("pre_thinking", 40.0), ("pre_thinking@64", 9.0), ("post_thinking", 0.8))]
        files.append(tmp_path / f"{task}.json")
        files[-1].write_text(json.dumps({"rows": rows}))
    png = tmp_path / "curve.png"
    monkeypatch.setattr("sys.argv", ["long_curve.py", *map(str, files), "--hallucination", "0.4", "--out", str(png)])
    assert long_curve.main() == 0
    assert png.stat().st_size > 10_000 and "(12 runs, 2 tasks)" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["long_curve.py", str(tmp_path / "missing.json")])
    with pytest.raises(UserError, match="no result file"):
        long_curve.main()


def test_overrides_reach_the_training_section(bench):
    quality, _ = bench
    cfg = quality.suite_config("long", False, {"max_length": 1152, "max_steps": 7,
                                               "methods": ["pre_thinking", "pre_thinking@64"]})
    assert cfg["training"]["max_length"] == 1152 and cfg["training"]["max_steps"] == 7
    assert [m["name"] for m in cfg["methods"]] == ["pre_thinking", "pre_thinking@64"]
    assert cfg["methods"][1]["think_budget"] == 64


def test_readme_refresh_fills_a_new_marker_pair_and_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import _table
    results = tmp_path / "results"
    results.mkdir()
    (results / "speed-x.json").write_text(json.dumps({"kind": "speed", "date": "d", "command": "c", "goals": [
        {"name": "a / b", "value": 0.5, "op": "<=", "goal": 1, "met": True}]}))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- table:speed-x -->\n<!-- /table:speed-x -->\n\ntail\n")
    assert _table.update_readme(readme, results) == ["speed-x"]
    once = readme.read_text()
    assert "a / b" in once and once.endswith("<!-- /table:speed-x -->\n\ntail\n")
    _table.update_readme(readme, results)
    assert readme.read_text() == once


@pytest.mark.parametrize("wording", ["swap-so", "had-gets", "state", "back", "balls", "balls-reworded"])
def test_tracking_wordings_replay_every_swap_and_keep_the_conclusion(bench, monkeypatch, wording):
    """The settings search's other tracking wordings: the colours they state after each swap are the
    true holdings (replayed here), and the conclusion still argues for the gold answer."""
    import _tracking_wordings

    from reasondistill.tasks import rationale_answer, synthetic
    track, conclude = _tracking_wordings.WORDINGS[wording]
    monkeypatch.setattr(synthetic, "_track", track)
    monkeypatch.setattr(synthetic, "_conclude", conclude)
    for ex in generate("tracking", 30, seed=2):
        p = ex.meta["problem"]
        names, balls = p["names"], p["balls"]
        holding = dict(zip(names, balls))
        for a, b in p["swaps"]:
            holding[names[a]], holding[names[b]] = holding[names[b]], holding[names[a]]
            after = {"swap-so": f"so {names[a]} has {holding[names[a]]} and {names[b]} has {holding[names[b]]}",
                     "had-gets": f"{names[a]} gets {holding[names[a]]} and {names[b]} gets {holding[names[b]]}",
                     "state": ", ".join(f"{n} has {holding[n]}" for n in names)}.get(wording)
            assert after is None or after in ex.rationale, (after, ex.rationale)
        if wording.startswith("balls"):  # each ball's trace ends with whoever holds it
            for colour in balls:
                holder = next(n for n, c in holding.items() if c == colour)
                assert (f"So the {colour} ball ends with {holder}." if wording == "balls"
                        else f"So {holder} ends with the {colour} ball.") in ex.rationale
        if wording == "back":  # the asked person's ball is traced to whoever held it at the start
            final = holding[names[p["target"]]]
            assert f"{names[balls.index(final)]} has a {final} ball at the start." in ex.rationale
        assert rationale_answer(ex, ex.rationale) == ex.answer


def test_long_goals_judge_time_and_robustness_and_say_na_for_one_rate(bench):
    import _table

    def row(method, h, acc, ms):
        return {"task": "t", "method": method, "hallucination": h, "accuracy": acc, "ms_to_answer": ms}
    rows = [row("pre_thinking", 0.0, 0.9, 100.0), row("pre_thinking", 0.4, 0.6, 100.0),
            row("post_thinking", 0.0, 0.9, 1.0), row("post_thinking", 0.4, 0.85, 1.0),
            row("pst", 0.0, 0.9, 5.0), row("pst", 0.4, 0.7, 5.0)]
    post, pst = _table.long_goals(rows).splitlines()
    assert "0.0100×" in post and "(goal ≤ 0.02×: met)" in post and "goal ≤ a third: met" in post
    assert "**not met**); " in pst and "goal ≤ a third: **not met**" in pst  # 0.05×; lost 0.2 > 0.3 / 3
    one_rate = _table.long_goals([r for r in rows if r["hallucination"] == 0.0])
    assert one_rate.count("n/a, one rate") == 2 and "lost from" not in one_rate
    noisy = [row("pre_thinking", 0.0, 0.9, 100.0), row("pre_thinking", 0.0, 0.5, 100.0),  # std 0.2 at h=0
             row("pre_thinking", 0.4, 0.6, 100.0), *rows[2:]]  # a loss of 0.1: within the spread
    assert _table.long_goals(noisy).count("n/a, pre_thinking's loss is within its seed spread") == 2


def test_check_wording_says_yes_once_for_the_asked_persons_ball(bench, monkeypatch):
    """The ``check`` wording (built in before ``asker``): one "yes" per rationale, on the ball the
    asked person ends with, and a wrong step's "yes" follows the wrong trace."""
    import _tracking_wordings

    from reasondistill.tasks import rationale_answer, synthetic
    track, conclude = _tracking_wordings.WORDINGS["check"]
    monkeypatch.setattr(synthetic, "_track", track)
    monkeypatch.setattr(synthetic, "_conclude", conclude)
    for ex in generate("tracking", 30, seed=2):
        target = ex.meta["problem"]["names"][ex.meta["problem"]["target"]]
        assert ex.rationale.count(": yes,") == 1 and f"asks about {target}: yes, {ex.answer}." in ex.rationale
        assert rationale_answer(ex, ex.rationale) == ex.answer
    for ex in generate("tracking", 30, seed=2, hallucination=1.0):
        said_yes = re.search(r": yes, ([ABC])\.", ex.rationale).group(1)
        claim = rationale_answer(ex, ex.rationale)
        assert claim != ex.answer and (claim == said_yes) == (ex.meta["hallucination"] == "wrong_step")


@pytest.mark.parametrize("wording", ["letters", "gets"])
def test_letter_wordings_name_the_gold_letter(bench, monkeypatch, wording):
    """The letter wordings end on the gold answer's letter."""
    import _tracking_wordings

    from reasondistill.tasks import synthetic
    track, conclude = _tracking_wordings.WORDINGS[wording]
    monkeypatch.setattr(synthetic, "_track", track)
    monkeypatch.setattr(synthetic, "_conclude", conclude)
    for ex in generate("tracking", 30, seed=2):
        assert ex.rationale.rstrip(".").endswith(ex.answer), ex.rationale


@pytest.mark.parametrize("task", ["coin_flip", "last_letters", "arithmetic", "tracking"])
def test_trace_audit_finds_where_a_long_trace_goes_wrong(bench, task):
    """bench/trace_audit.py: the teacher's clean trace passes in either layout; a wrong state in the
    first pass fails 'first pass right'; a hallucinated trace that argues for another answer keeps a
    right first pass and fails 'concludes gold' (the answer lost after the first pass)."""
    import trace_audit
    examples = generate(task, 40, seed=3, hallucination=0.5, style="long", tokens=200)
    clean = [ex for ex in examples if not ex.meta["hallucinated"]][:5]
    for ex in clean:
        for text in (f" {ex.rationale}\nAnswer: {ex.answer}", f" {ex.answer}\nRationale: {ex.rationale}"):
            assert trace_audit.audit_question(task, ex, text) == {"first_pass_right": True, "concludes_gold": True}
        lines = ex.rationale.split("\n")
        first = trace_audit.STATES[task].search(lines[1])
        changed = "X" if task != "tracking" else "Xx"
        lines[1] = lines[1][:first.start(1)] + changed + lines[1][first.end(1):]
        assert trace_audit.audit_question(task, ex, "\n".join(lines))["first_pass_right"] is False
    wrong = [ex for ex in examples if ex.meta.get("hallucination") == "wrong_conclusion"]
    assert wrong
    for ex in wrong:
        assert trace_audit.audit_question(task, ex, ex.rationale) == {"first_pass_right": True,
                                                                      "concludes_gold": False}


def test_settings_search_passes_method_options_and_max_length_to_training(bench, tmp_path, monkeypatch):
    """bench/settings_search.py: --option and --max-length reach the run's training call, name its
    folder and are logged with its row; a malformed option is a user error."""
    import settings_search
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_search, "RESULTS", tmp_path / "search.json")
    monkeypatch.setattr("sys.argv", ["settings_search.py", "--task", "coin_flip", "--max-steps", "2", "--n-train", "16",
                                     "--n-test", "8", "--batch-size", "4", "--max-length", "96",
                                     "--option", "rationale_weight=2.0"])
    assert settings_search.main() == 0
    (row,) = json.loads((tmp_path / "search.json").read_text())["runs"]
    assert row["options"] == {"rationale_weight": 2.0} and row["max_length"] == 96
    call = json.loads((tmp_path / "runs/settings" / row["label"] / "train_call.json").read_text())
    assert row["label"].endswith("-rationale_weight2.0")
    assert call["method_options"]["rationale_weight"] == 2.0 and call["max_length"] == 96
    monkeypatch.setattr("sys.argv", ["settings_search.py", "--task", "coin_flip", "--option", "bad"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        settings_search.main()
