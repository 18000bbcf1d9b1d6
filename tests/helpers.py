"""Micro-scale builders shared by the tests: a few dozen examples, a one-layer student."""

from __future__ import annotations

import json
from pathlib import Path

from reasondistill.api import student_texts
from reasondistill.models import build_tiny_student
from reasondistill.tasks import generate

MICRO_TRAIN = {"max_steps": 80, "batch_size": 8, "lr": 1e-2, "log_every": 5, "checkpoint_every": 0}


def micro_setup(task: str = "coin_flip", n: int = 48, seed: int = 0, hallucination: float = 0.0):
    examples = generate(task, n, seed=seed, hallucination=hallucination)
    model, tok = build_tiny_student("micro", student_texts(examples), vocab_size=320, seed=seed)
    return examples, model, tok


def logged_losses(run_dir: Path, key: str = "loss") -> list[float]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line]
    return [r[key] for r in rows if key in r]


def batch_loss(method, model, batch) -> dict:
    """The trainer's loss (and logs) for one batch as a whole optimiser step: the method's targets
    and forward through the trainer's objective (chunked token losses, step normalisation)."""
    from reasondistill.training import TrainingModule, count_targets
    module = TrainingModule(model, method)
    module.train(model.training)
    return module(batch, count_targets(method, [batch]))
