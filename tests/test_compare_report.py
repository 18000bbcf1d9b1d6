"""compare (the grid runner) and report (HTML + PNG): one micro grid, shared by the tests below.

The grid mixes a synthetic task (two hallucination rates) and a teacher file (two rationale
filters), two seeds, a plain method and a variant, so every collapse rule, the skip-on-re-run, the
fixed file split and the report's four figures are exercised on real (tiny) runs.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from reasondistill import UserError, compare, report
from reasondistill.cli import main
from reasondistill.report.grid import load_config
from reasondistill.tasks import generate, load_task

TRAIN = {"max_steps": 12, "batch_size": 8, "lr": 1e-2, "log_every": 3, "checkpoint_every": 0}


def teacher_file(path: Path, n: int = 30) -> Path:
    """A teacher-rationale JSONL (the zero-shot-cot shape) with every third teacher answer wrong."""
    with open(path, "w") as f:
        for i, ex in enumerate(generate("coin_flip", n, seed=3)):
            wrong = i % 3 == 0
            flipped = "no" if ex.answer == "yes" else "yes"
            f.write(json.dumps({"id": f"cf-{i}", "task": "coin_flip", "question": ex.question, "answer": ex.answer,
                                "rationale": ex.rationale, "teacher_answer": flipped if wrong else ex.answer,
                                "teacher_correct": not wrong}) + "\n")
    return path


def grid_config(tmp: Path) -> dict:
    return {"out": str(tmp / "grid"), "title": "micro grid", "student": "micro",
            "methods": ["answer_only", {"name": "pt-r1", "method": "post_thinking", "options": {"rationale_weight": 1.0}}],
            "tasks": ["synthetic/coin_flip", "teacher.jsonl"], "data_root": str(tmp),
            "hallucination": [0.0, 0.4], "seeds": [0, 1], "keep": ["correct", "all"],
            "n_train": 24, "n_test": 8, "training": TRAIN, "vocab_size": 320, "test_fraction": 0.3,
            "max_new_tokens": 12}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    teacher_file(tmp / "teacher.jsonl")
    cfg = grid_config(tmp)
    results = compare(cfg, progress=False)
    return tmp, cfg, results


def test_grid_cells_rows_and_folders(grid):
    tmp, _, results = grid
    rows = results["rows"]
    # synthetic: 2 seeds x 2 rates x 2 methods (keep collapses: nothing to filter);
    # file: 2 seeds x (answer_only once + pt-r1 per filter) (hallucination collapses to 0).
    assert results["complete"] and results["n_cells"] == len(rows) == 8 + 6
    on_disk = json.loads((tmp / "grid" / "results.json").read_text())
    assert on_disk["rows"] == rows and on_disk["config"]["student"] == "micro"
    synthetic = [r for r in rows if r["task"] == "synthetic-coin_flip"]
    teacher = [r for r in rows if r["task"] == "teacher"]
    assert {(r["hallucination"], r["keep"]) for r in synthetic} == {(0.0, "all"), (0.4, "all")}
    assert {(r["method"], r["keep"]) for r in teacher} == {("answer_only", "all"), ("pt-r1", "correct"),
                                                            ("pt-r1", "all")}
    assert all(r["hallucination"] == 0.0 for r in teacher)
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["ms_to_answer"] > 0 and r["chance"] == 0.5
        assert r["config"]["training"]["seed"] == r["seed"] and r["config"]["training"]["max_steps"] == 12
        run = tmp / "grid" / r["run_dir"]
        assert run.name == f"h{r['hallucination']:g}-s{r['seed']}-{r['keep']}"
        assert (run / "metrics.json").exists() and (run / "metrics.jsonl").exists()
    # the variant's options reached the trained method
    record = json.loads((tmp / "grid/teacher/pt-r1/h0-s1-correct/reasondistill.json").read_text())
    assert record["method"] == "post_thinking" and record["method_options"]["rationale_weight"] == 1.0
    # keep=correct trained on fewer examples than keep=all (a third of the teacher answers are wrong)
    n_train = {r["keep"]: r["n_train"] for r in teacher if r["method"] == "pt-r1" and r["seed"] == 0}
    assert n_train["correct"] < n_train["all"] == 21


def test_file_split_is_fixed_and_shared_by_seeds(grid):
    tmp = grid[0]
    test = load_task(str(tmp / "teacher.jsonl"), "test", seed=0, test_fraction=0.3)
    assert len(test) == 9
    expected = [ex.id for ex in test[:8]]  # n_test: 8
    for seed in (0, 1):
        preds = (tmp / f"grid/teacher/pt-r1/h0-s{seed}-all/predictions.jsonl").read_text().splitlines()
        assert [json.loads(line)["id"] for line in preds] == expected
    train_ids = {ex.id for ex in load_task(str(tmp / "teacher.jsonl"), "train", seed=0, test_fraction=0.3)}
    assert not train_ids & set(expected)


def test_rerun_skips_finished_cells_and_redoes_missing_eval(grid):
    tmp, cfg, results = grid
    root = tmp / "grid"
    redo = root / "synthetic-coin_flip/pt-r1/h0.4-s1-all"
    weights = next(redo.glob("*.safetensors"))
    weights_mtime = weights.stat().st_mtime_ns
    (redo / "metrics.json").unlink()
    cell = json.loads((redo / "cell.json").read_text())
    (redo / "cell.json").write_text(json.dumps({**cell, "seconds": 1000.0}))  # as if training took 1000 s
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("metrics.json")}
    again = compare(cfg, progress=False, report=False)
    assert json.loads((redo / "cell.json").read_text())["seconds"] > 1000  # training's time still counts
    assert [r["run_dir"] for r in again["rows"]] == [r["run_dir"] for r in results["rows"]]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())     # finished cells untouched
    assert (redo / "metrics.json").exists()                             # the missing eval was redone...
    assert weights.stat().st_mtime_ns == weights_mtime                   # ...without retraining


def test_changed_config_refuses_old_folders(grid):
    cfg = grid[1]
    changed = {**cfg, "training": {**TRAIN, "max_steps": 13}}
    with pytest.raises(UserError, match="training"):
        compare(changed, progress=False, report=False)


@pytest.mark.parametrize("patch, needle", [
    ({"bogus": 1}, "bogus=...): unknown option"),
    ({"methods": ["nope"]}, "unknown method 'nope'"),
    ({"methods": [{"name": "x", "method": "pst", "options": {"bogus": 1}}]}, "bogus"),
    ({"methods": ["answer_only", {"name": "answer_only", "method": "prefix"}]}, "appear twice"),
    ({"keep": ["some"]}, "keep=...)[0]: input should be 'correct' or 'all'"),
    ({"seeds": "x"}, "seeds"),
    ({"methods": [{"name": "../up", "method": "pst"}]}, "cannot be a folder name"),
    ({"tasks": ["missing.jsonl"]}, "task file not found: missing.jsonl"),
    ({"tasks": ["synthetic/nope"]}, "unknown synthetic task"),
    ({"training": {"max_stepz": 3}}, "max_stepz"),
    ({"methods": [{"name": "sc", "method": "softcot", "student": "run:main"}, "answer_only"]}, "is not in the grid"),
    ({"methods": [{"name": "sc", "method": "softcot", "options": {"assistant": "run:answer_only"}}, "answer_only"]},
     "run:answer_only, which comes after it"),
    ({"methods": [{"name": "t", "method": "pst", "training": {"max_stepz": 3}}]}, "max_stepz"),
    ({"methods": [{"name": "t", "method": "pst", "studnet": "tiny"}]}, "studnet"),
])
def test_config_mistakes_are_user_errors(tmp_path, patch, needle):
    with pytest.raises(UserError) as e:
        load_config({**grid_config(tmp_path), **patch})
    assert needle in str(e.value)


def test_cli_compare_and_report(grid, tmp_path, capsys):
    cfg = grid[1]
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["compare", "--config", str(config), "--no-report"]) == 0  # every cell finished: no training
    assert "14 runs" in capsys.readouterr().out
    assert main(["report", cfg["out"], "--out", str(tmp_path / "r" / "index.html")]) == 0
    assert (tmp_path / "r" / "index.html").exists() and (tmp_path / "r" / "plots" / "accuracy.png").exists()
    assert main(["compare", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def _png_sources(html: str) -> list[bytes]:
    from PIL import Image
    sources = re.findall(r"<img[^>]*\bsrc='([^']*)'", html)
    images = []
    for src in sources:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        Image.open(io.BytesIO(data)).verify()  # raises on a broken PNG
        images.append(data)
    return images


def test_report_html_is_self_contained(grid):
    tmp, _, _ = grid
    path = report(tmp / "grid")
    html = path.read_text()
    assert html.count("<img") == 4  # accuracy, trade-off, hallucination, loss curves
    images = _png_sources(html)
    assert len(images) == 4
    beside = sorted(p.name for p in (path.parent / "plots").glob("*.png"))
    assert beside == ["accuracy.png", "hallucination.png", "losses.png", "tradeoff.png"]
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count("<tr>") == 1 + 4 + 3  # header, synthetic 2 methods x 2 rates, file 3 settings


def test_report_of_plain_run_folders(grid, tmp_path):
    tmp, _, _ = grid
    for rel in ("teacher/answer_only/h0-s0-all", "teacher/pt-r1/h0-s0-correct"):
        shutil.copytree(tmp / "grid" / rel, tmp_path / "runs" / rel.replace("/", "_"))
    html = report(tmp_path / "runs").read_text()
    assert len(_png_sources(html)) == 3  # one hallucination rate: no robustness figure
    assert "answer_only" in html and "post_thinking" in html
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="nothing to report"):
        report(tmp_path / "empty")


def test_report_renders_in_headless_chromium(grid, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip("chromium not installed (apt-get install chromium); CI installs it")
    tmp, _, _ = grid
    html_path = report(tmp / "grid")
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    html_path.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2000)
    pixels = list(image.getdata())
    white = sum(1 for p in pixels if min(p) > 245)
    assert white < 0.95 * len(pixels), "screenshot is (nearly) blank"
    assert len(set(pixels)) > 300, "too few colours: the figures did not render"
    # Text and tables are grey; saturated pixels come only from the plotted bars, lines and markers.
    saturated = sum(1 for p in pixels if max(p) - min(p) > 100)
    assert saturated > 0.002 * len(pixels), "no coloured plot pixels in the screenshot"


def test_two_stage_rows_build_on_earlier_rows(tmp_path):
    """A row's ``student`` and options may name an earlier row (``run:NAME``): softcot's frozen main
    model and assistant, and a KD student's teacher, come from rows trained first in the same cell;
    a row's own ``student`` and ``training`` override the grid's."""
    cfg = {"out": str(tmp_path / "grid"), "student": "micro", "tasks": ["synthetic/coin_flip"], "seeds": [0],
           "hallucination": [0.0], "n_train": 24, "n_test": 6, "training": TRAIN, "vocab_size": 320,
           "max_new_tokens": 12, "explain": False,
           "methods": ["answer_only",
                       {"name": "softcot-main", "method": "softcot", "options": {"stage": "main", "n_train": 4}},
                       {"name": "softcot", "method": "softcot", "student": "run:softcot-main",
                        "options": {"assistant": "run:answer_only", "n_train": 4}},
                       {"name": "teacher", "method": "pre_thinking", "student": "mini",
                        "training": {"max_steps": 6}},
                       {"name": "pre_thinking+kd", "method": "pre_thinking",
                        "options": {"teacher_model": "run:teacher"}}]}
    results = compare(cfg, progress=False, report=False)
    rows = {r["method"]: r for r in results["rows"]}
    assert results["complete"] and set(rows) == {m if isinstance(m, str) else m["name"] for m in cfg["methods"]}
    grid = tmp_path / "grid" / "synthetic-coin_flip"
    refs = json.loads((grid / "softcot" / "h0-s0-all" / "frozen_models.json").read_text())
    assert refs["main"] == str((grid / "softcot-main" / "h0-s0-all").resolve())
    assert refs["assistant"] == str((grid / "answer_only" / "h0-s0-all").resolve())
    assert rows["softcot"]["config"]["student"] == "run:softcot-main"  # the spec keeps the reference
    teacher = json.loads((grid / "teacher" / "h0-s0-all" / "reasondistill.json").read_text())
    assert teacher["student"] == "mini" and teacher["train"]["steps"] == 6
    kd = json.loads((grid / "pre_thinking+kd" / "h0-s0-all" / "train_call.json").read_text())
    assert kd["method_options"]["teacher_model"] == str((grid / "teacher" / "h0-s0-all").resolve())
    assert kd["student"] == "micro" and kd["max_steps"] == TRAIN["max_steps"]  # the call is the flat train options
    assert all(r["accuracy"] is not None for r in rows.values())


def test_a_reference_follows_the_rationale_filter(tmp_path):
    """On a teacher file, a row that filters rationales builds on the referenced row's run with the
    same filter; a row that reads no rationale (answer_only) has only its ``keep=all`` run."""
    from reasondistill.report.grid import cells, referenced_cell
    teacher_file(tmp_path / "teacher.jsonl")
    cfg = load_config({**grid_config(tmp_path), "tasks": ["teacher.jsonl"], "hallucination": [0.0], "seeds": [0],
                       "methods": ["answer_only", {"name": "main", "method": "softcot", "options": {"stage": "main"}},
                                   {"name": "sc", "method": "softcot", "student": "run:main",
                                    "options": {"assistant": "run:answer_only"}}]})
    for cell in (c for c in cells(cfg) if c.name == "sc"):
        main, assistant = referenced_cell(cell, "main", cfg), referenced_cell(cell, "answer_only", cfg)
        assert (main.keep, assistant.keep) == (cell.keep, "all")
        assert main.rel_dir == f"teacher/main/h0-s0-{cell.keep}"
        assert assistant.rel_dir == "teacher/answer_only/h0-s0-all"
    assert sorted(c.keep for c in cells(cfg) if c.name == "sc") == ["all", "correct"]


def test_budget_rows_evaluate_an_earlier_row_without_training(tmp_path):
    """``{name, evaluates, think_budget}`` tests the named row's trained student of the same cell
    with its thinking cut: no training of its own, the same method in the results, fewer thinking
    tokens than the unlimited row, and every answer forced at budget 0."""
    cfg = {"out": str(tmp_path / "grid"), "student": "micro", "tasks": ["synthetic/coin_flip"], "seeds": [0],
           "hallucination": [0.0], "n_train": 24, "n_test": 8, "training": TRAIN, "vocab_size": 320,
           "max_new_tokens": 24, "explain": False,
           "methods": ["pre_thinking", {"name": "pre_thinking@0", "evaluates": "pre_thinking", "think_budget": 0},
                       {"name": "pre_thinking@4", "evaluates": "pre_thinking", "think_budget": 4}]}
    results = compare(cfg, progress=False, report=False)
    rows = {r["method"]: r for r in results["rows"]}
    assert results["complete"] and set(rows) == {"pre_thinking", "pre_thinking@0", "pre_thinking@4"}
    assert {r["base_method"] for r in rows.values()} == {"pre_thinking"}  # one family: one curve in the plot
    grid = tmp_path / "grid" / "synthetic-coin_flip"
    for name in ("pre_thinking@0", "pre_thinking@4"):
        folder = grid / name / "h0-s0-all"
        assert not (folder / "reasondistill.json").exists() and not (folder / "checkpoints").exists()
        assert json.loads((folder / "metrics.json").read_text())["think_budget"] == rows[name]["config"]["think_budget"]
    forced = [json.loads(line) for line in (grid / "pre_thinking@0" / "h0-s0-all" / "predictions.jsonl").open()]
    assert forced and all(p["extras"]["forced_answer"] for p in forced)
    for name, budget in (("pre_thinking@0", 0), ("pre_thinking@4", 4)):  # at most N tokens before the marker
        for line in (grid / name / "h0-s0-all" / "predictions.jsonl").open():
            thought, marker, _ = json.loads(line)["text"].partition("\nAnswer:")
            assert marker and len(thought.split()) <= budget
    again = compare(cfg, progress=False, report=False)  # a re-run finds every cell finished
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in results["rows"]]


@pytest.mark.parametrize("row, needle", [
    ({"name": "pt@8", "evaluates": "post_thinking", "think_budget": 8}, "think-first"),
    ({"name": "x@8", "evaluates": "nothing", "think_budget": 8}, "not in the grid"),
    ({"name": "x@8", "evaluates": "pre_thinking", "think_budget": -1}, ">= 0"),
    ({"name": "x@8", "evaluates": "pre_thinking", "method": "pst"}, "evaluates"),
])
def test_budget_row_mistakes_are_user_errors(tmp_path, row, needle):
    cfg = {**grid_config(tmp_path), "tasks": ["synthetic/coin_flip"], "methods": ["pre_thinking", "post_thinking", row]}
    with pytest.raises(UserError, match=needle):
        load_config(cfg)
