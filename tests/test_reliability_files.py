"""Reliability of options, run folders and input files, attacked as a user would (issue 12 and 17).

Every bad option, clobbering rerun, killed run, path-escaping name, undecodable file and malformed
results file must end in one line and exit 2 before any work, and leave nothing half-made.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import reasondistill
from reasondistill import UserError
from reasondistill.cli import main
from reasondistill.io import atomic_write_text

MICRO = ["--student", "micro", "--n", "24", "--vocab-size", "300", "--batch-size", "8", "--checkpoint-every", "0",
         "--no-progress"]


def one_line_error(capsys, *args) -> str:
    """Run the CLI in-process; assert exit 2 and a single stderr line without a traceback."""
    code = main(list(args))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line and "warning" not in line]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def train_cli(out: Path, *extra: str, method: str = "answer_only", steps: int = 2) -> int:
    return main(["train", "--method", method, "--data", "synthetic/coin_flip", "--out", str(out),
                 "--max-steps", str(steps), *MICRO, *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rel") / "run"
    assert train_cli(out) == 0
    return out


# ----- one option system --------------------------------------------------------------------------

@pytest.mark.parametrize("text, needles", [
    ("max_step: 5\n", ["run.yaml", "max_step", "max_steps"]),          # a typo: named, with the right key
    ("max_steps: five\n", ["run.yaml", "max_steps", "five"]),           # a wrong type
    ("batch_size: 0\n", ["run.yaml", "batch_size"]),                    # out of range
    ("flux_capacitor: 1\n", ["run.yaml", "flux_capacitor"]),            # unknown key
])
def test_yaml_mistakes_are_one_line_naming_file_and_key(tmp_path, capsys, text, needles):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("method: answer_only\ndata: synthetic/coin_flip\n" + text)
    line = one_line_error(capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "o"))
    for needle in needles:
        assert needle in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--max-steps", "-1"), ("--lr", "0"),
                                         ("--grad-accum", "0"), ("--max-length", "0"), ("--max-steps", "x")])
def test_out_of_range_flags_are_refused_before_work(tmp_path, capsys, flag, value):
    line = one_line_error(capsys, "train", "--method", "answer_only", "--data", "synthetic/coin_flip",
                          "--out", str(tmp_path / "o"), flag, value)
    assert flag in line
    assert not (tmp_path / "o").exists()


def test_unknown_flag_and_method_option_are_one_line(tmp_path, capsys):
    assert "--max-stepz" in one_line_error(capsys, "train", "--method", "pst", "--data", "synthetic/coin_flip",
                                           "--out", str(tmp_path / "o"), "--max-stepz", "3")
    line = one_line_error(capsys, "train", "--method", "pst", "--data", "synthetic/coin_flip", "--out",
                          str(tmp_path / "o"), "--option", "alignmnet=infonce")
    assert "alignmnet" in line and "alignment" in line
    line = one_line_error(capsys, "train", "--method", "pst", "--data", "synthetic/coin_flip", "--out",
                          str(tmp_path / "o"), "--option", "semantic_weight=-1")
    assert "semantic_weight" in line


def test_python_api_takes_the_cli_options_as_keywords(tmp_path):
    record = reasondistill.train(method="answer_only", data="synthetic/coin_flip", student="micro",
                                 out=tmp_path / "api", max_steps=3, lr=1e-3, n=16, vocab_size=300,
                                 checkpoint_every=0, progress=False)
    assert record["train"]["steps"] == 3
    call = json.loads((tmp_path / "api" / "train_call.json").read_text())
    assert call["lr"] == 1e-3 and call["max_steps"] == 3
    with pytest.raises(UserError, match="max_step.*max_steps"):
        reasondistill.train(method="answer_only", data="synthetic/coin_flip", out=tmp_path / "x", max_step=3)
    with pytest.raises(UserError, match="lr"):
        reasondistill.train("answer_only", "synthetic/coin_flip", tmp_path / "x", lr=-1.0)


def test_eval_config_supplies_model_and_data(finished_run, tmp_path, capsys):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"model: {finished_run}\ndata: synthetic/coin_flip\nn: 4\nout: {tmp_path / 'ev'}\n"
                   "max_new_tokens: 8\nprogress: false\n")
    assert main(["eval", "--config", str(cfg)]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["data"] == "synthetic/coin_flip"


def test_methods_show_prints_each_option_with_its_help(capsys):
    assert main(["methods", "show", "post_thinking"]) == 0
    out = capsys.readouterr().out
    assert "rationale_weight" in out and "0.5" in out and "cross-entropy" in out
    assert "kd_loss" in out  # the options every method shares


# ----- run folders --------------------------------------------------------------------------------

def test_train_refuses_a_finished_run_folder(finished_run, capsys):
    before = {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()}
    line = one_line_error(capsys, "train", "--method", "post_thinking", "--data", "synthetic/coin_flip",
                          "--out", str(finished_run), *MICRO)
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in finished_run.iterdir() if p.is_file()} == before


def test_resume_names_what_differs_from_the_saved_call(finished_run, capsys):
    line = one_line_error(capsys, "train", "--method", "post_thinking", "--data", "synthetic/coin_flip",
                          "--out", str(finished_run), "--lr", "0.05", "--resume", *MICRO)
    assert "method" in line and "post_thinking" in line and "lr" in line


def test_overwrite_clears_the_folder_first(tmp_path):
    out = tmp_path / "run"
    assert train_cli(out) == 0
    (out / "stale.txt").write_text("from before")
    assert train_cli(out, "--overwrite", method="post_thinking") == 0
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "reasondistill.json").read_text())["method"] == "post_thinking"


def _train_until_killed(out: Path, *extra: str) -> None:
    """Start a long CLI training into ``out`` and SIGKILL it once a new checkpoint has appeared."""
    before = set((out / "checkpoints").glob("step-*"))
    args = [sys.executable, "-m", "reasondistill", "train", "--method", "answer_only", "--data",
            "synthetic/coin_flip", "--out", str(out), "--max-steps", "100000", "--student", "micro", "--n", "24",
            "--vocab-size", "300", "--batch-size", "8", "--checkpoint-every", "5", "--no-progress", *extra]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not set((out / "checkpoints").glob("step-*")) - before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert set((out / "checkpoints").glob("step-*")) - before, "no new checkpoint appeared"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_a_killed_run_never_looks_finished(tmp_path, capsys):
    out = tmp_path / "killed"
    _train_until_killed(out)
    line = one_line_error(capsys, "eval", "--model", str(out), "--data", "synthetic/coin_flip", "--n", "2")
    assert "did not finish" in line
    # the checkpoint resumes the run (same call, more steps allowed), and then it is finished
    resume = ["--resume", "--checkpoint-every", "5"]
    assert main(["train", "--method", "answer_only", "--data", "synthetic/coin_flip", "--out", str(out),
                 "--max-steps", "6", *MICRO, *resume]) == 0
    assert (out / "reasondistill.json").exists()
    # resuming a finished run further and killing it: the old record must not vouch for the new state
    _train_until_killed(out, "--resume")
    assert "did not finish" in one_line_error(capsys, "eval", "--model", str(out), "--data", "synthetic/coin_flip")


def test_a_failed_start_leaves_no_half_made_folder(tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train", "--method", "answer_only", "--data", "synthetic/coin_flip", "--out", str(out),
                 "--student", str(tmp_path / "no-such-model"), "--max-steps", "2", "--no-progress"])
    capsys.readouterr()
    assert code != 0
    assert not out.exists()



def test_training_that_fails_before_a_checkpoint_leaves_nothing(tmp_path, monkeypatch, capsys):
    """The folder is made just before training; a crash before the first checkpoint takes away
    everything that call wrote (so the same command runs again without --overwrite), while a
    compare host's own cell.json in the folder stays."""
    from reasondistill import api

    def crash(method, model, tokenizer, examples, out, *args, **kwargs):
        (out / "train_log.jsonl").write_text("{}\n")  # training had begun writing
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(api, "run_training", crash)
    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError):
        reasondistill.train("answer_only", "synthetic/coin_flip", out, student="micro", n=24, vocab_size=300,
                            max_steps=2, progress=False)
    assert not out.exists()
    hosted = tmp_path / "hosted"
    hosted.mkdir()
    (hosted / "cell.json").write_text("{}")
    with pytest.raises(RuntimeError):
        reasondistill.train("answer_only", "synthetic/coin_flip", hosted, student="micro", n=24, vocab_size=300,
                            max_steps=2, progress=False)
    assert [p.name for p in hosted.iterdir()] == ["cell.json"]
    monkeypatch.undo()
    assert train_cli(out) == 0  # no --overwrite needed: nothing of the crashed call is left

def test_compare_refuses_names_that_escape_the_output_folder(tmp_path, capsys):
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"out: {tmp_path / 'grid'}\nstudent: micro\ntasks: [synthetic/coin_flip]\n"
                   "methods: [{name: '../../../escaped', method: answer_only}]\ntraining: {max_steps: 2}\n")
    line = one_line_error(capsys, "compare", "--config", str(cfg))
    assert "escaped" in line
    assert not (tmp_path / "grid").exists() and not list(tmp_path.parent.glob("escaped"))


def test_compare_cell_without_loadable_task_leaves_no_cell_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "1"}\n{"question": \n')
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(f"out: {tmp_path / 'grid'}\nstudent: micro\ntasks: [{bad}]\nmethods: [answer_only]\n"
                   "training: {max_steps: 2}\n")
    assert "bad.jsonl:2" in one_line_error(capsys, "compare", "--config", str(cfg))
    assert not list(tmp_path.rglob("cell.json"))


def test_compare_reevaluates_a_cell_whose_metrics_are_another_evaluation(tmp_path):
    cfg = {"out": str(tmp_path / "grid"), "student": "micro", "tasks": ["synthetic/coin_flip"],
           "methods": ["answer_only"], "n_train": 16, "n_test": 6, "vocab_size": 300, "max_new_tokens": 8,
           "training": {"max_steps": 2, "batch_size": 8, "checkpoint_every": 0}, "report": False}
    first = reasondistill.compare(cfg, progress=False)["rows"][0]
    cell = tmp_path / "grid" / first["run_dir"]
    reasondistill.evaluate(cell, "synthetic/last_letters", n=3, progress=False)  # a manual eval in the cell
    again = reasondistill.compare(cfg, progress=False)["rows"][0]
    assert again["n"] == 6
    assert json.loads((cell / "metrics.json").read_text())["data"] == "synthetic/coin_flip"


def test_written_files_get_the_usual_mode(finished_run, tmp_path):
    old = os.umask(0o022)
    try:
        for p in finished_run.iterdir():
            if p.is_file():
                assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name
        os.umask(0o027)
        atomic_write_text(tmp_path / "f.txt", "x")
        assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_teach_refuses_an_existing_out_file(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    out.write_text("precious\n")
    line = one_line_error(capsys, "teach", "--data", "synthetic/coin_flip", "--teacher", "scripted", "--n", "3",
                          "--out", str(out), "--quiet")
    assert "--overwrite" in line and out.read_text() == "precious\n"
    assert main(["teach", "--data", "synthetic/coin_flip", "--teacher", "scripted", "--n", "3", "--out", str(out),
                 "--quiet", "--overwrite"]) == 0
    assert out.read_text() != "precious\n"


# ----- input files and output paths ---------------------------------------------------------------

def test_non_utf8_inputs_name_file_and_line(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    data.write_bytes(b'{"question": "q1", "answer": "1"}\n{"question": "q2", "answer": "2"}\n'
                     b'{"question": "\xff\xfe", "answer": "3"}\n')
    line = one_line_error(capsys, "train", "--method", "answer_only", "--data", str(data), "--out",
                          str(tmp_path / "o"), "--split", "all")
    assert "data.jsonl:3" in line and "UTF-8" in line
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(b"method: answer_only\ndata: \xe9t\xe9\n")
    assert "run.yaml:2" in one_line_error(capsys, "train", "--config", str(cfg), "--out", str(tmp_path / "o"))
    shots = tmp_path / "shots.jsonl"
    shots.write_bytes(b'{"question": "q", "answer": "1", "rationale": "\x80"}\n')
    assert "shots.jsonl:1" in one_line_error(capsys, "teach", "--data", "synthetic/coin_flip", "--teacher",
                                             "scripted", "--few-shot", str(shots), "--out", str(tmp_path / "r.jsonl"))
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "results.json").write_bytes(b'{"rows": []}\n\xff')
    assert "results.json:2" in one_line_error(capsys, "report", str(runs))


@pytest.mark.parametrize("results, needle", [({"rows": {"a": 1}}, "rows"), ({"rows": [{"task": "t"}]}, "method"),
                                             ([1, 2], "rows")])
def test_report_checks_the_shape_of_results(tmp_path, capsys, results, needle):
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert needle in one_line_error(capsys, "report", str(tmp_path))


def test_output_paths_are_checked_before_any_compute(finished_run, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "file" in one_line_error(capsys, "train", "--method", "answer_only", "--data", "synthetic/coin_flip",
                                    "--out", str(a_file))
    assert "file" in one_line_error(capsys, "eval", "--model", str(finished_run), "--data", "synthetic/coin_flip",
                                    "--out", str(a_file))
    assert a_file.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_out_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert "not writable" in one_line_error(capsys, "train", "--method", "answer_only", "--data",
                                                "synthetic/coin_flip", "--out", str(locked / "run"))
    finally:
        locked.chmod(0o755)


def test_overlong_examples_are_skipped_and_counted(tmp_path, capsys):
    data = tmp_path / "data.jsonl"
    rows = [{"question": f"{i} + 1?", "answer": str(i + 1)} for i in range(12)]
    rows.append({"question": "huge " * 400_000, "answer": "0"})  # 2 MB in one record
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    assert main(["train", "--method", "answer_only", "--data", str(data), "--split", "all", "--out", str(out),
                 "--student", "micro", "--vocab-size", "200", "--max-steps", "1", "--checkpoint-every", "0",
                 "--no-progress"]) == 0
    assert "skipped 1 example" in capsys.readouterr().err
    assert json.loads((out / "reasondistill.json").read_text())["n_too_long"] == 1
    line = one_line_error(capsys, "train", "--method", "answer_only", "--data", str(data), "--split", "all",
                          "--out", str(tmp_path / "r2"), "--max-example-chars", "3")
    assert "--max-example-chars" in line
