"""liger-kernel's fused linear cross-entropy: when it is used, that it changes nothing, and the errors.

The dispatch tests run anywhere with a fake ``liger_kernel`` that computes the plain formula (and
counts its calls), with the CPU admitted as a fused device; the equivalence test runs the real
kernel and needs a CUDA GPU with liger-kernel installed (``bench/gpu_memory_check.sh`` runs it).
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from helpers import micro_setup
from test_cli import InProcess, _assert_user_error

from reasondistill.errors import UserError
from reasondistill.loss import LMHead, liger, lm_head, token_losses
from reasondistill.methods import get_method
from reasondistill.training import TrainConfig, TrainingModule, build_features, collate, count_targets

MODULES = ("liger_kernel", "liger_kernel.transformers", "liger_kernel.transformers.functional")


@pytest.fixture
def fake_liger(monkeypatch):
    """A ``liger_kernel`` whose fused function is the plain formula; the CPU counts as a fused device."""
    calls = []

    def fused(input, weight, target, bias=None, reduction="mean", **kwargs):
        calls.append({"rows": input.shape[0], "reduction": reduction, "kwargs": kwargs})
        return F.cross_entropy(F.linear(input, weight, bias).float(), target, reduction=reduction)

    for name in MODULES:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[MODULES[-1]].liger_fused_linear_cross_entropy = fused
    monkeypatch.setattr(liger, "FUSED_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    monkeypatch.setattr(liger, "_failed", None)
    return calls


@pytest.fixture
def no_liger(monkeypatch):
    for name in MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    monkeypatch.setattr(liger, "_failed", None)


def _batch(n=6):
    examples, model, tok = micro_setup(n=n)
    method = get_method("post_thinking", answer_weight=1.0, rationale_weight=0.3)
    batch = collate(build_features(method, examples, tok, 512), tok.pad_token_id)
    return method, model, batch


def _losses(head, model, batch, positions, setting, extra=None):
    hidden = head.body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return token_losses(head, hidden, positions, batch["input_ids"], extra=extra, use_liger_kernel=setting)


def test_auto_takes_the_fused_path_with_the_same_losses_and_gradients(fake_liger):
    method, model, batch = _batch()
    head = lm_head(model)
    positions = method.targets(batch).positions()
    grads = []
    for setting in ("false", "auto"):
        model.zero_grad()
        ce, _ = _losses(head, model, batch, positions, setting)
        ce.sum().backward()
        grads.append((ce.detach(), [p.grad.clone() for p in model.parameters()]))
    assert len(fake_liger) == 1 and fake_liger[0]["reduction"] == "none"
    assert fake_liger[0]["rows"] == int(positions.sum())  # target rows only, all at once
    (ce_chunked, g_chunked), (ce_fused, g_fused) = grads
    assert torch.allclose(ce_chunked, ce_fused, atol=1e-6)
    for a, b in zip(g_chunked, g_fused):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_the_fused_path_falls_back_where_it_would_compute_something_else(fake_liger, monkeypatch):
    method, model, batch = _batch(n=3)
    positions = method.targets(batch).positions()
    head = lm_head(model)
    kd = lambda logits, start, stop: logits.logsumexp(-1)  # noqa: E731 (a per-token term needing logits)
    _losses(head, model, batch, positions, "false")
    _, extra = _losses(head, model, batch, positions, "auto", extra=kd)
    assert extra is not None and not fake_liger  # KD: chunked (the term needs the logits)
    for attr, value in (("softcap", 30.0), ("scale", 0.5), ("divide", 4.0), ("plain", True)):
        other = LMHead(model)
        setattr(other, attr, value)
        (_losses(other, model, batch, positions, "auto") if attr != "plain" else None)
        assert liger.why_not("auto", other, torch.device("cpu"), False) is not None, attr
    assert not fake_liger
    monkeypatch.setattr(liger, "FUSED_DEVICE_TYPES", frozenset({"cuda"}))  # the real rule: CUDA only
    _losses(head, model, batch, positions, "auto")
    assert not fake_liger
    monkeypatch.setattr(liger, "FUSED_DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    _losses(head, model, batch, positions, "auto")
    assert len(fake_liger) == 1  # the same call where everything holds


def test_per_token_weights_apply_on_the_fused_path(fake_liger):
    """The trainer's objective (span weights 1.0 / 0.3, random per-token weights, step
    normalisation) on the fused path equals the plain full-logits formula."""
    method, model, batch = _batch()
    batch["weights"] = torch.rand(batch["input_ids"].shape, generator=torch.Generator().manual_seed(0)) + 0.5
    targets = method.targets(batch)
    module = TrainingModule(model, method, use_liger_kernel="auto")
    module.train()
    got = module(batch, count_targets(method, [batch]))["loss"]
    assert fake_liger and module.loss_path == "liger"
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    ce = F.cross_entropy(logits.transpose(1, 2), batch["input_ids"][:, 1:], reduction="none")
    want = sum(method.targets(batch).token_coefs[g] * (w * ce).sum() / w.sum() for g, w in targets.tokens.items())
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)


def test_true_without_cuda_or_without_liger_is_one_line_before_training(tmp_path, capsys, no_liger, monkeypatch):
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        liger.check_setting("true", torch.device("cpu"))
    liger.check_setting("auto", torch.device("cpu"))  # auto and false never refuse
    liger.check_setting("false", torch.device("cuda"))
    monkeypatch.setattr(liger, "FUSED_DEVICE_TYPES", frozenset({"cuda", "cpu"}))  # as if on a GPU
    with pytest.raises(UserError, match=r"needs liger-kernel .*reasondistill\[liger\]"):
        liger.check_setting("true", torch.device("cpu"))
    monkeypatch.setattr(liger, "FUSED_DEVICE_TYPES", frozenset({"cuda"}))
    out = tmp_path / "o"
    _assert_user_error(InProcess(capsys, "train", "--method", "answer_only", "--data", "synthetic/coin_flip",
                                 "--n", "8", "--student", "micro", "--vocab-size", "300", "--max-steps", "2",
                                 "--use-liger-kernel", "true", "--out", str(out)), "use_liger_kernel=true", "CUDA")
    assert not (out / "metrics.jsonl").exists() and not (out / "reasondistill.json").exists()


def test_the_option_reads_yaml_and_api_booleans():
    assert TrainConfig(use_liger_kernel=True).use_liger_kernel == "true"
    assert TrainConfig(use_liger_kernel=False).use_liger_kernel == "false"
    assert TrainConfig().use_liger_kernel == "auto"


def _cuda_liger() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import liger_kernel.transformers.functional  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _cuda_liger(), reason="needs a CUDA GPU and liger-kernel (pip install 'reasondistill[liger]')")
def test_real_liger_equals_the_plain_formula_in_loss_and_gradients():
    """The real kernel on a micro model: per-token losses and every gradient equal the plain
    full-logits formula in float32, and the chunked path under bf16 autocast."""
    method, model, batch = _batch()
    model.cuda()
    batch = {k: v.cuda() for k, v in batch.items()}
    targets = method.targets(batch)
    positions = targets.positions()
    weights = (targets.tokens["answer"] + 0.3 * targets.tokens["rationale"])[positions]
    head = lm_head(model)
    assert liger.why_not("auto", head, batch["input_ids"].device, False) is None

    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    plain = F.cross_entropy(logits[positions], batch["input_ids"][:, 1:][positions], reduction="none")
    (weights * plain).sum().backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    fused, _ = _losses(head, model, batch, positions, "true")
    (weights * fused).sum().backward()
    assert torch.allclose(fused.detach(), plain.detach(), atol=1e-4, rtol=1e-4)
    for a, p in zip(want, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-4, rtol=1e-3), (a - p.grad).abs().max()

    results = []
    for setting in ("false", "true"):
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ce, _ = _losses(head, model, batch, positions, setting)
        (weights * ce).sum().backward()
        results.append((ce.detach(), [p.grad.clone() for p in model.parameters()]))
    (ce_a, g_a), (ce_b, g_b) = results
    assert torch.allclose(ce_a, ce_b, atol=3e-2, rtol=3e-2), (ce_a - ce_b).abs().max()
    for a, b in zip(g_a, g_b):
        assert torch.allclose(a, b, atol=2e-2, rtol=5e-2), (a - b).abs().max()
