"""The command line: user mistakes give one line and exit code 2; train/eval write run folders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reasondistill.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "reasondistill", *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def _assert_user_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


class InProcess:
    """main() in this process: the same exit code and stderr as the console script, without a
    new interpreter per case."""

    def __init__(self, capsys, *args):
        self.returncode = main(list(args))
        self.stderr = capsys.readouterr().err


def test_missing_file_from_the_console(tmp_path):
    _assert_user_error(run_cli("train", "--method", "pst", "--data", str(tmp_path / "nope.jsonl"),
                               "--out", str(tmp_path / "o")), "nope.jsonl")


@pytest.mark.parametrize("name, text, needles", [
    ("bad.jsonl", '{"question": "q1", "answer": "1"}\n{"question": "q2", "answer": \n', ["bad.jsonl:2"]),
    ("nofield.jsonl", '{"question": "q1", "answer": "1"}\n{"question": "q2"}\n', ["nofield.jsonl:2", "answer"]),
    ("empty.jsonl", "", ["empty.jsonl"]),
])
def test_bad_data_files_are_named(tmp_path, capsys, name, text, needles):
    """A malformed line, a missing field and an empty file: one line naming the file (and line)."""
    bad = tmp_path / name
    bad.write_text(text)
    _assert_user_error(InProcess(capsys, "train", "--method", "answer_only", "--data", str(bad), "--format", "jsonl",
                               "--out", str(tmp_path / "o")), *needles)


def test_unknown_method(tmp_path, capsys):
    _assert_user_error(InProcess(capsys, "train", "--method", "telepathy", "--data", "synthetic/coin_flip",
                               "--out", str(tmp_path / "o")), "telepathy")


def test_rationale_method_without_rationales(tmp_path, capsys):
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"question": "1+1?", "answer": "2"}\n' * 3)
    _assert_user_error(InProcess(capsys, "train", "--method", "pst", "--data", str(plain), "--format", "jsonl",
                               "--split", "all", "--out", str(tmp_path / "o")), "rationale")


def test_tasks_list_names_the_synthetic_tasks(capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("synthetic/coin_flip", "synthetic/last_letters", "synthetic/arithmetic"):
        assert name in out


def test_config_file_values_and_flag_override(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("method: answer_only\ndata: synthetic/coin_flip\nstudent: micro\nn: 24\nmax_steps: 3\n"
                   "batch_size: 8\nvocab_size: 300\ncheckpoint_every: 0\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--max-steps", "2"]) == 0
    record = json.loads((out / "reasondistill.json").read_text())
    assert record["method"] == "answer_only" and record["train"]["steps"] == 2  # the flag beat the file
    assert record["n_train"] == 24


def test_end_to_end_on_real_teacher_rationales(shared_data, tmp_path):
    """train + eval through the CLI on GPT-3's zero-shot-CoT rationales for MultiArith."""
    data = str(shared_data / "zero-shot-cot" / "multiarith.jsonl")
    out = tmp_path / "pst"
    r = run_cli("train", "--method", "pst", "--data", data, "--student", "micro", "--out", str(out),
                "--max-steps", "15", "--batch-size", "8", "--vocab-size", "400", "--n", "120",
                "--option", "encoder=student", "--checkpoint-every", "0")
    assert r.returncode == 0, r.stderr
    record = json.loads((out / "reasondistill.json").read_text())
    assert 0 < record["n_train"] <= 120  # wrong teacher rationales were filtered out
    r = run_cli("eval", "--model", str(out), "--data", data, "--n", "24")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("method", "n", "accuracy", "tokens_to_answer", "ms_to_answer", "tokens_total", "ms_total"):
        assert key in metrics
    assert metrics["method"] == "pst" and metrics["n"] == 24
    from transformers import AutoModelForCausalLM
    assert AutoModelForCausalLM.from_pretrained(str(out)) is not None  # plain transformers loads the run
