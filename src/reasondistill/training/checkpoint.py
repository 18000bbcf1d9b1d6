"""Checkpoints: the full training state, so ``--resume`` reproduces the uninterrupted run exactly.

accelerate's ``save_state`` holds weights, optimiser, scheduler and RNG states; beside it
``trainer_state.json`` (the step) and ``schedule_state.pt`` (what the method's and the KD term's
schedules have learnt so far: kpod's k per question and difficulties, TAID's t and momentum).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..io import atomic_write_json

SCHEDULES_FILE = "schedule_state.pt"


def save_checkpoint(accelerator, root: Path, step: int, schedules: dict) -> None:
    """Into checkpoints/step-N, written under a temporary name and renamed, then older checkpoints
    removed."""
    tmp = root / f".step-{step}.tmp"
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        torch.save(schedules, tmp / SCHEDULES_FILE)
        atomic_write_json(tmp / "trainer_state.json", {"step": step})
        final = root / f"step-{step}"
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def load_latest_checkpoint(accelerator, root: Path) -> tuple[int, dict]:
    """(step, schedule states) of the newest complete checkpoint, its state loaded; (0, {}) if none."""
    done = sorted((p for p in root.glob("step-*") if (p / "trainer_state.json").exists()),
                  key=lambda p: int(p.name.split("-")[1]))
    if not done:
        return 0, {}
    accelerator.load_state(str(done[-1]))
    schedules = {}
    if (done[-1] / SCHEDULES_FILE).exists():
        schedules = torch.load(done[-1] / SCHEDULES_FILE, weights_only=False)
    return json.loads((done[-1] / "trainer_state.json").read_text())["step"], schedules
