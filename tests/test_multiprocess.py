"""Two CPU processes are one data-parallel job: same steps as one process with the same global batch.

The two-process run goes through the command the README documents, ``accelerate launch --cpu
--num_processes 2`` (which the CLI turns into a torchrun of two gloo processes), with a micro student.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from reasondistill.processes import shard_batches

from helpers import logged_losses

RUN = {"method": "pre_thinking", "data": "synthetic/coin_flip", "n": 48, "student": "micro", "vocab_size": 320,
       "max_steps": 30, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0}


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _train(launcher: list[str], config: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = [*launcher, "-m", "reasondistill", "train", "--config", str(config), "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    config = root / "run.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in RUN.items()))
    one = _train([sys.executable], config, root / "one")
    accelerate = [shutil.which("accelerate") or "accelerate", "launch", "--num_processes", "2", "--cpu"]
    two = _train(accelerate, config, root / "two")
    return root / "one", root / "two", one.stdout, two.stdout


def test_two_processes_form_one_job_that_matches_one_process(runs):
    one, two, _, _ = runs
    rec1 = json.loads((one / "reasondistill.json").read_text())["train"]
    rec2 = json.loads((two / "reasondistill.json").read_text())["train"]
    assert rec1["num_processes"] == 1
    assert rec2["num_processes"] == 2 and rec2["distributed_type"] == "MULTI_CPU"
    # Sharding: the two processes together train on exactly the tokens the one process did (without it,
    # each would train on every global batch and the sum would double).
    assert rec2["tokens"] == rec1["tokens"]
    # Gradient averaging: the loss curve and the final weights follow the one-process run; each process
    # stepping on its own half batch drifts away from it within a few steps at this learning rate.
    l1, l2 = logged_losses(one), logged_losses(two)
    assert len(l1) == len(l2) == 3  # logged every 10 steps
    assert l1[-1] < l1[0] - 0.5
    assert max(abs(a - b) for a, b in zip(l1, l2)) < 0.02, (l1, l2)  # measured: 1e-4 averaged, 0.04 not
    w1, w2 = _weights(one), _weights(two)
    moved = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert moved < 0.03, moved  # measured: 0.005 averaged, 0.19 when each process keeps its own gradients


def test_only_the_main_process_writes_and_reports(runs):
    one, two, _, stdout = runs
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows] == [10, 20, 30]  # appended once per logged step
    assert stdout.count("trained pre_thinking on") == 1
    assert (two / "tokenizer.json").read_text() == (one / "tokenizer.json").read_text()


def test_a_cpu_launch_that_started_one_process_is_refused(tmp_path):
    # accelerate's one-process launcher env, but not started by `accelerate launch`: no N to start.
    env = {**_env(), "ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    done = subprocess.run([sys.executable, "-m", "reasondistill", "train", "--method", "answer_only", "--data",
                           "synthetic/coin_flip", "--student", "micro", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "started one process" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


def test_shards_cover_each_global_batch_once():
    batches = [[0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10], [11]]
    shards = [shard_batches(batches, r, 2) for r in range(2)]
    assert [sorted(a + b) for a, b in zip(*shards)] == [list(range(8)), [8, 9, 10], [11, 11]]
    assert all(len(s) == len(batches) for s in shards)  # every process takes every step
