"""The trainer's defining behaviours: exact resume for methods that draw random numbers or keep
schedules, sequences of one example sharing a step, truncation that never cuts an answer."""

from __future__ import annotations

import pytest
import torch
from helpers import logged_losses, micro_setup

import reasondistill.training.checkpoint as checkpoint
from reasondistill.methods import ANSWER, RATIONALE, get_method
from reasondistill.training import TrainConfig, build_features, example_batches, train

CONFIG = {"max_steps": 8, "batch_size": 8, "lr": 3e-3, "log_every": 1, "checkpoint_every": 4}
FAST_KPOD = {"mask_steps": 20, "answer_model_steps": 20, "schedule_updates": 4, "progressive_until": 1.0}


class Crash(Exception):
    pass


def _run(name, options, out, kd, resume=False, crash=False):
    examples, model, tok = micro_setup(n=24)
    config = TrainConfig(**CONFIG, **kd)
    real = checkpoint.save_checkpoint

    def save_then_crash(*args):
        real(*args)
        raise Crash()

    if crash:
        checkpoint.save_checkpoint = save_then_crash
    try:
        train(get_method(name, **options), model, tok, examples, out, config, resume=resume, tiny=True,
              progress=False)
    except Crash:
        pass
    finally:
        checkpoint.save_checkpoint = real
    return model


@pytest.fixture(scope="module")
def micro_teacher(tmp_path_factory):
    examples, model, tok = micro_setup(n=24)  # the students' tokenizer, other weights
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    path = tmp_path_factory.mktemp("teacher")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("name,options,taid", [
    ("post_thinking", {"mask_rationale": 0.3}, False),
    ("kpod", FAST_KPOD, False),
    ("pst", {"encoder": "student", "alignment": "infonce"}, False),
    ("post_thinking", {}, True),
])
def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, micro_teacher, name, options, taid):
    kd = {"teacher_model": micro_teacher, "kd_loss": "taid"} if taid else {}
    straight = _run(name, options, tmp_path / "straight", kd)
    _run(name, options, tmp_path / "resumed", kd, crash=True)
    assert (tmp_path / "resumed" / "checkpoints" / "step-4").exists()
    resumed = _run(name, options, tmp_path / "resumed", kd, resume=True)
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), key
    assert logged_losses(tmp_path / "straight") == logged_losses(tmp_path / "resumed")
    for key in ("mean_k", "taid_t", "align"):
        assert logged_losses(tmp_path / "straight", key) == logged_losses(tmp_path / "resumed", key)
    if name == "kpod":
        assert len(set(logged_losses(tmp_path / "straight", "mean_k"))) > 2  # the schedule moved across the resume
    if taid:
        t = logged_losses(tmp_path / "straight", "taid_t")
        assert t[5] > t[3]


def test_an_examples_sequences_share_every_batch():
    """prefix: answer task and rationale task of the same examples train in the same step, although
    their lengths differ widely (length grouping alone would sort them apart)."""
    examples, _, tok = micro_setup(n=40)
    method = get_method("prefix")
    groups: list[int] = []
    features = build_features(method, examples, tok, 512, groups=groups)
    lengths = [len(f.input_ids) for f in features]
    batches = example_batches(groups, lengths, 8, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(len(features)))
    for batch in batches:
        spans = {s for i in batch for s in features[i].spans}
        assert {ANSWER, RATIONALE} <= spans
        assert sorted(groups[i] for i in batch) == sorted(2 * sorted({groups[i] for i in batch}))
    assert all(len(b) == 8 for b in batches)


def test_prefix_logs_both_tasks_at_every_step(tmp_path):
    examples, model, tok = micro_setup(n=32)
    train(get_method("prefix"), model, tok, examples, tmp_path, TrainConfig(**{**CONFIG, "checkpoint_every": 0}),
          tiny=True, progress=False)
    answer, rationale = logged_losses(tmp_path, "ce_answer"), logged_losses(tmp_path, "ce_rationale")
    assert len(answer) == len(rationale) == 8 and min(answer) > 0 and min(rationale) > 0


def test_max_length_cuts_answer_first_rationales_and_drops_think_first(tmp_path):
    examples, model, tok = micro_setup(n=16)
    post, pre = get_method("post_thinking"), get_method("pre_thinking")
    full_post = build_features(post, examples, tok, 10_000)
    limit = sorted(len(f.input_ids) for f in full_post)[len(full_post) // 2]
    stats: dict[str, int] = {}
    cut = build_features(post, examples, tok, limit, stats)
    longer = sum(len(f.input_ids) > limit for f in full_post)
    assert stats == {"cut": longer, "dropped": 0} and longer > 0
    for short, full in zip(cut, build_features(post, examples, tok, 10_000)):
        assert len(short.input_ids) <= limit
        assert [t for t, s in zip(full.input_ids, full.spans) if s == ANSWER] == \
               [t for t, s in zip(short.input_ids, short.spans) if s == ANSWER]  # the answer is whole
    full_pre = build_features(pre, examples, tok, 10_000)
    limit = sorted(len(f.input_ids) for f in full_pre)[len(full_pre) // 2]
    stats = {}
    kept = build_features(pre, examples, tok, limit, stats)
    assert stats["cut"] == 0 and stats["dropped"] == sum(len(f.input_ids) > limit for f in full_pre) > 0
    assert len(kept) == len(full_pre) - stats["dropped"]
    summary = train(pre, model, tok, examples, tmp_path, TrainConfig(**{**CONFIG, "max_steps": 1,
                    "checkpoint_every": 0, "max_length": limit}), tiny=True, progress=False)
    assert summary["truncated"] == stats


def test_gradient_checkpointing_trains_the_same_weights(tmp_path):
    runs = []
    for flag in (False, True):
        examples, model, tok = micro_setup(n=16)
        train(get_method("post_thinking"), model, tok, examples, tmp_path / str(flag),
              TrainConfig(**{**CONFIG, "max_steps": 2, "checkpoint_every": 0, "gradient_checkpointing": flag}),
              tiny=True, progress=False)
        runs.append(model)
    assert runs[1].model.gradient_checkpointing and not runs[0].model.gradient_checkpointing
    for a, b in zip(runs[0].parameters(), runs[1].parameters()):
        assert torch.allclose(a, b, atol=1e-5)
