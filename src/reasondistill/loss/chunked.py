"""Next-token losses from hidden states, a bounded number of tokens at a time.

Only the predicted positions are gathered (``[N, d]``, N = target tokens, never the prompt); each
chunk of at most ``chunk_tokens`` rows goes through the LM head, the cross-entropy and any extra
per-token term (token-level KD) inside ``torch.utils.checkpoint``: the forward keeps no chunk's
logits, the backward recomputes them one chunk at a time. So the largest vocabulary-sized tensor is
``chunk_tokens x vocab`` floats, whatever the batch and sequence length, at the price of running the
head twice on the target rows. On CUDA, with liger-kernel installed, a plain linear head and no extra
term, liger's fused linear cross-entropy computes the same per-token losses in Triton kernels instead
(``liger.py`` says when; the ``use_liger_kernel`` option chooses).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import liger

CHUNK_TOKENS = 256
# extra(student_logits [n, V] float, start, stop) -> per-token term [n]; rows start..stop of the gather.
Extra = Callable[[torch.Tensor, int, int], torch.Tensor]


def _chunk(head, extra: Extra | None, start: int, stop: int, hidden: torch.Tensor, ids: torch.Tensor):
    logits = head.logits(hidden).float()
    ce = F.cross_entropy(logits, ids, reduction="none")
    if extra is None:
        return ce, None
    return ce, extra(logits, start, stop)


def token_losses(head, hidden: torch.Tensor, positions: torch.Tensor, input_ids: torch.Tensor, *,
                 extra: Extra | None = None, chunk_tokens: int = CHUNK_TOKENS, use_liger_kernel: str = "auto"
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token cross-entropy ``[N]`` (and ``extra``'s term ``[N]``) at the True entries of
    ``positions`` ``[B, T-1]`` in row-major order, position ``p`` predicting ``input_ids[:, p+1]``.
    ``hidden`` is ``[B, T, d]`` (the head's input). ``use_liger_kernel`` (auto/true/false) allows
    liger's fused kernel where it applies (``liger.py``)."""
    rows = hidden[:, :-1][positions]
    ids = input_ids[:, 1:][positions]
    if rows.size(0) and liger.use_fused(use_liger_kernel, head, rows.device, extra is not None):
        return liger.fused_token_losses(head, rows, ids), None
    ce_parts, extra_parts = [], []
    grad = torch.is_grad_enabled() and rows.requires_grad
    for start in range(0, rows.size(0), chunk_tokens):
        stop = min(start + chunk_tokens, rows.size(0))
        args = (head, extra, start, stop, rows[start:stop], ids[start:stop])
        ce, more = checkpoint(_chunk, *args, use_reentrant=False) if grad else _chunk(*args)
        ce_parts.append(ce)
        extra_parts.append(more)
    if not ce_parts:
        empty = rows[:, 0].float() * 0.0  # no target in this micro-batch: [0], still on the graph
        return empty, (empty if extra is not None else None)
    ce = torch.cat(ce_parts)
    return ce, (torch.cat(extra_parts) if extra is not None else None)
