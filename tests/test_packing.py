"""Packing (padding-free): a packed row computes what its sequences compute alone, and trains."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from helpers import logged_losses, micro_setup
from test_cli import InProcess, _assert_user_error

from reasondistill.errors import UserError
from reasondistill.loss import token_losses
from reasondistill.methods import PROMPT, Feature, get_method
from reasondistill.models import build_tiny_student
from reasondistill.api import student_texts
from reasondistill.runfolder import CALL_FILE
from reasondistill.training import TrainingModule, build_features, collate, count_targets
from reasondistill.training.packing import check_model, join, pack


def _mini(n=8):
    """A 2-layer random-weight LLaMA (the "mini" shape) and post_thinking features of ``n`` examples."""
    examples, _, _ = micro_setup(n=n)
    model, tok = build_tiny_student("mini", student_texts(examples), vocab_size=320, seed=0)
    method = get_method("post_thinking", answer_weight=1.0, rationale_weight=0.3)
    return method, model, tok, build_features(method, examples, tok, 512)


def _per_token_ce(method, model, batch):
    out = method.loss(model, batch)
    return token_losses(out.head, out.hidden, method.targets(batch).positions(), batch["input_ids"])[0]


def test_a_packed_forward_gives_each_sequences_own_token_losses_and_gradients():
    method, model, tok, features = _mini()
    model.eval()
    rows = [join(features[:3]), join(features[3:5]), join(features[5:])]  # known order; rows of unequal length
    packed = collate(rows, tok.pad_token_id)
    assert packed["attention_mask"].sum(1).unique().numel() > 1  # the shorter rows are padded
    alone = torch.cat([_per_token_ce(method, model, collate([f], tok.pad_token_id)) for f in features])
    together = _per_token_ce(method, model, packed)
    assert together.shape == alone.shape  # the same targets: no token trained across a boundary
    assert torch.allclose(together, alone, atol=1e-5, rtol=1e-5), (together - alone).abs().max()

    # The whole objective: step-normalised loss and its gradients, packed against the padded batch.
    def step(batch):
        model.zero_grad()
        module = TrainingModule(model, method)
        out = module(batch, count_targets(method, [batch]))
        out["loss"].backward()
        return out["loss"].detach(), [p.grad.clone() for p in model.parameters()]
    want, want_grads = step(collate(copy.deepcopy(features), tok.pad_token_id))
    got, got_grads = step(packed)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    for a, b in zip(want_grads, got_grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_pack_fills_rows_best_fit_and_keeps_every_sequence_once():
    lengths = [9, 7, 6, 5, 4, 3, 3, 2, 1]
    features = [Feature(list(range(100 * i, 100 * i + n)), [PROMPT] + [1] * (n - 1)) for i, n in enumerate(lengths)]
    rows = pack(features, 10)
    assert all(len(r.input_ids) <= 10 for r in rows)
    assert len(rows) == 4  # 40 tokens in rows of 10: best fit leaves no room unused
    starts = sorted(tuple(r.input_ids[i:i + 1]) for r in rows for i, p in enumerate(r.extras["position_ids"]) if p == 0)
    assert starts == sorted((100 * i,) for i in range(len(lengths)))
    for r in rows:  # every sequence's first token is read, never predicted from the one before it
        assert all(s == PROMPT for s, p in zip(r.spans, r.extras["position_ids"]) if p == 0)


def test_join_keeps_per_token_weights():
    a = Feature([1, 2, 3], [PROMPT, 1, 1], [1.0, 0.5, 2.0])
    b = Feature([4, 5], [1, 1])  # no weights: 1.0, and its first token becomes a prompt token
    row = join([a, b])
    assert row.weights == [1.0, 0.5, 2.0, 1.0, 1.0]
    assert row.spans == [PROMPT, 1, 1, PROMPT, 1] and row.extras["position_ids"] == [0, 1, 2, 0, 1]


def test_a_student_whose_attention_ignores_position_ids_is_refused():
    _, model, _ = micro_setup(n=4)
    check_model(model)  # a LLaMA on transformers' masks: separated
    original = type(model).forward

    def forward(self, *args, position_ids=None, **kwargs):  # drops the positions: one causal sequence
        return original(self, *args, **kwargs)
    model.forward = forward.__get__(model)
    with pytest.raises(UserError, match="packed sequences apart"):
        check_model(model)


def test_training_with_packing_runs_its_loss_falls_and_the_record_says_so(tmp_path):
    from reasondistill import api
    record = api.train(method="pre_thinking", data="synthetic/coin_flip", n=48, student="micro", vocab_size=320,
                       out=tmp_path / "run", max_steps=40, batch_size=2, lr=1e-2, log_every=5, checkpoint_every=0,
                       max_length=256, packing=True, progress=False)
    packing = record["train"]["packing"]
    assert packing["sequences"] == 48 and packing["rows"] < 48 / 2, packing  # several examples per row
    assert record["train"]["n_features"] == packing["rows"]
    losses = logged_losses(tmp_path / "run")
    assert losses[-1] < 0.7 * losses[0], losses
    call = json.loads((tmp_path / "run" / CALL_FILE).read_text())
    assert call["packing"] is True


@pytest.mark.parametrize("method", ["pst", "kpod", "adaptive", "softcot"])
def test_packing_is_refused_for_methods_with_sequence_level_terms(tmp_path, capsys, method):
    _assert_user_error(InProcess(capsys, "train", "--method", method, "--data", "synthetic/coin_flip", "--n", "8",
                                 "--student", "micro", "--packing", "--out", str(tmp_path / "o")),
                       f"'{method}' does not support packing", "answer_only, pre_thinking, prefix, post_thinking")
    assert not (tmp_path / "o").exists()
