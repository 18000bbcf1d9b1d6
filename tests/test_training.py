"""The trainer: checkpoints resume exactly, runs are deterministic, batches group by length."""

from __future__ import annotations

import torch

from reasondistill.methods import get_method
from reasondistill.training import TrainConfig, length_grouped_batches, train

from helpers import logged_losses, micro_setup

CONFIG = {"max_steps": 12, "batch_size": 8, "lr": 3e-3, "log_every": 2, "checkpoint_every": 6}


def _train(out, max_steps, resume=False):
    examples, model, tok = micro_setup(n=32)
    summary = train(get_method("post_thinking"), model, tok, examples, out,
                    TrainConfig(**{**CONFIG, "max_steps": max_steps}), resume=resume, tiny=True, progress=False)
    return model, summary


def test_resume_continues_from_checkpoint_and_matches_uninterrupted_run(tmp_path):
    straight, _ = _train(tmp_path / "straight", 12)
    # An interrupted run: the first 6 steps write a checkpoint; a restart with --resume goes on from it.
    # (A 12-step schedule so both runs see the same learning rates.)
    examples, model, tok = micro_setup(n=32)
    cfg = TrainConfig(**CONFIG)
    partial_dir = tmp_path / "resumed"

    class Crash(Exception):
        pass

    import reasondistill.training.checkpoint as training
    real_save = training.save_checkpoint

    def save_then_crash(accelerator, root, step, schedules):
        real_save(accelerator, root, step, schedules)
        raise Crash()

    training.save_checkpoint = save_then_crash
    try:
        try:
            train(get_method("post_thinking"), model, tok, examples, partial_dir, cfg, tiny=True, progress=False)
        except Crash:
            pass
    finally:
        training.save_checkpoint = real_save
    assert (partial_dir / "checkpoints" / "step-6").exists()

    resumed, summary = _train(partial_dir, 12, resume=True)
    assert summary["resumed_from"] == 6 and summary["steps"] == 12
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name
    steps = [r for r in logged_losses(partial_dir, "step")]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # no duplicated rows after the resume


def test_same_seed_same_weights(tmp_path):
    a, _ = _train(tmp_path / "a", 4)
    b, _ = _train(tmp_path / "b", 4)
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


def test_length_grouped_batches_cover_everything_once_and_pad_less():
    lengths = [((i * 37) % 101) + 1 for i in range(400)]
    batches = length_grouped_batches(lengths, 8, seed=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(400))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches of 8 from 1..101 would spread by ~75
