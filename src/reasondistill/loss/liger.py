"""liger-kernel's fused linear cross-entropy, used on CUDA where it computes what ``chunked.py`` does.

``chunked.py`` bounds memory with torch ops: each chunk's logits are built, reduced and dropped,
then built again in the backward. liger-kernel (``pip install 'reasondistill[liger]'``) does the
same in Triton kernels that never hold a chunk's float32 logits, which on a GPU is faster and
lighter at large vocabularies. With ``reduction="none"`` it returns per-token losses and folds each
token's upstream gradient into the logits gradient before projecting it onto the head's weight, so
the per-token weights of ``objective.py`` apply exactly as on the chunked path.

It is used only where it computes the same function: the tensors are on CUDA, the head is a plain
``nn.Linear`` (no soft-cap, scale or divisor, not ``LMHead.plain``), its weight is an ordinary dense
tensor (not an FSDP shard), and there is no per-token ``extra`` term (token-level KD needs the
student's logits, which the fused kernel never materialises). Everywhere else the chunked path runs.

The ``use_liger_kernel`` training option (TRL and transformers users know the name): ``auto``
(default) uses it wherever the above holds and liger is installed; ``true`` insists: no CUDA device
or no liger is a ``UserError`` before training starts, and where it cannot apply a warning says
why; ``false`` never uses it. liger is imported only when the fused path is considered, so the
extra stays optional.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable

import torch
from torch import nn

from ..errors import UserError

log = logging.getLogger(__name__)
SETTINGS = ("auto", "true", "false")
MODULE = "liger_kernel.transformers.functional"
FUSED_DEVICE_TYPES = frozenset({"cuda"})  # the devices liger's Triton kernels are used on here
_failed: str | None = None                # why the last import failed (not retried every micro-batch)
_warned: set[str] = set()


def load() -> Callable | None:
    """liger's ``liger_fused_linear_cross_entropy``, or None when it cannot be imported (the reason
    is then in :func:`import_error`)."""
    global _failed
    if _failed is not None and MODULE not in sys.modules:
        return None
    try:
        fn = importlib.import_module(MODULE).liger_fused_linear_cross_entropy
    except Exception as e:  # ImportError, or Triton failing to initialise: either way, not usable
        _failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return None
    _failed = None
    return fn


def import_error() -> str | None:
    """Why liger could not be imported, once :func:`load` has tried."""
    return _failed


def check_setting(setting: str, device: torch.device) -> None:
    """``use_liger_kernel=true`` on a machine where it cannot run: one line, before any training."""
    if setting != "true":
        return
    if device.type not in FUSED_DEVICE_TYPES:
        raise UserError(f"use_liger_kernel=true needs a CUDA GPU, but training runs on {device.type}; "
                        "use auto (the default) or false")
    if load() is None:
        raise UserError(f"use_liger_kernel=true needs liger-kernel ({import_error()}); "
                        "pip install 'reasondistill[liger]', or use auto or false")


def why_not(setting: str, head, device: torch.device, has_extra: bool) -> str | None:
    """None when the fused path computes this head's token losses, else the reason it does not."""
    if setting == "false":
        return "use_liger_kernel=false"
    if device.type not in FUSED_DEVICE_TYPES:
        return f"tensors on {device.type}, not CUDA"
    if has_extra:
        return "a per-token term (token-level KD) needs the logits"
    if getattr(head, "plain", True) or not isinstance(getattr(head, "output", None), nn.Linear):
        return "the LM head is not a plain linear layer"
    if any(getattr(head, k, None) is not None for k in ("softcap", "scale", "divide")):
        return "the architecture transforms its logits (soft-cap, scale or divisor)"
    weight = head.output.weight
    if weight.dim() != 2 or weight.numel() == 0 or type(weight.data) is not torch.Tensor:
        return "the head's weight is sharded (FSDP)"
    if load() is None:
        return f"liger-kernel not importable ({import_error()})"
    return None


def use_fused(setting: str, head, device: torch.device, has_extra: bool) -> bool:
    """Whether to take the fused path; with ``true``, warn once per reason when it cannot."""
    reason = why_not(setting, head, device, has_extra)
    if reason is not None and setting == "true" and reason not in _warned:
        _warned.add(reason)
        log.warning("use_liger_kernel=true, but the chunked loss runs here: %s", reason)
    return reason is None


def fused_token_losses(head, rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy ``[N]`` (float32) of hidden rows ``[N, d]`` against ``ids`` ``[N]``
    through the head's linear layer, by liger's fused kernel (gradients per token, see above)."""
    fn = load()
    if fn is None:
        raise RuntimeError(f"liger-kernel is not importable: {import_error()}")
    linear = head.output
    return fn(rows.contiguous(), linear.weight, ids, bias=linear.bias, reduction="none").float()
