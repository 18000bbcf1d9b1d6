"""One micro-batch's share of the optimiser step's loss.

The method declares what it trains (``Method.targets``) and runs the student (``Method.loss``); here
the token losses are computed from the student's hidden states in chunks (``loss.chunked``), on
exactly the declared positions, and token-level KD, when a teacher is configured, on the same
positions with the same weights. Every sum is divided by the step's total (``count_targets``: all
micro-batches, all processes), so a micro-batch contributes ``sum / total`` and the contributions
add up to the step's mean whatever the split into micro-batches. Times ``scale`` (the process count)
because DDP averages gradients across processes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..loss import Targets, liger, token_losses
from ..methods import ANSWER, RATIONALE, Method


def count_targets(method: Method, batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each target group's total weight (token groups) or count (sequence groups) over ``batches``."""
    totals: dict[str, torch.Tensor] = {}
    for batch in batches:
        for key, value in method.targets(batch).counts().items():
            totals[key] = totals[key] + value if key in totals else value
    return totals


class TrainingModule(nn.Module):
    """The student plus the method's extra modules, so DDP sees (and syncs) every trained weight
    and the method's whole loss runs inside one forward."""

    def __init__(self, model: nn.Module, method: Method, distiller=None, chunk_tokens: int = 256,
                 use_liger_kernel: str = "auto") -> None:
        super().__init__()
        self.model = model
        self.extras = nn.ModuleDict(method.modules())
        self.method = [method]        # lists: not registered as submodules (the teacher is not trained)
        self.distiller = [distiller]
        self.chunk_tokens = chunk_tokens
        self.use_liger_kernel = use_liger_kernel
        self.loss_path: str | None = None  # "liger" or "chunked", as the last training forward took it

    def forward(self, batch: dict[str, torch.Tensor], totals: dict[str, torch.Tensor],
                scale: float = 1.0) -> dict[str, torch.Tensor]:
        method, distiller = self.method[0], self.distiller[0]
        targets = method.targets(batch)
        out = method.loss(self.model, batch)
        positions = targets.positions()
        kd_term = distiller.chunk_term(batch, positions) if distiller is not None and self.training else None
        ce, kd = token_losses(out.head, out.hidden, positions, batch["input_ids"], extra=kd_term,
                              chunk_tokens=self.chunk_tokens, use_liger_kernel=self.use_liger_kernel)
        if self.training:
            fused = liger.why_not(self.use_liger_kernel, out.head, out.hidden.device, kd_term is not None) is None
            self.loss_path = "liger" if fused else "chunked"
        loss, kd_sum = _token_terms(targets, positions, ce, kd, totals)
        for group, mask in targets.sequences.items():
            per_sequence = torch.where(mask > 0, out.sequences[group], torch.zeros_like(out.sequences[group]))
            loss = loss + targets.sequence_coefs[group] * per_sequence.sum() / totals[f"sequences:{group}"].clamp(min=1)
        logs = _logs(batch, targets, positions, ce.detach(), out)
        if kd_sum is not None:
            loss = loss + distiller.weight * kd_sum
            logs["kd"] = kd_sum.detach()
        full = torch.zeros_like(positions, dtype=ce.dtype)
        full[positions] = ce.detach()
        logs.update({k: v.detach() for k, v in method.observe(batch, full).items()})
        return {"loss": loss * scale, "step_loss": loss.detach(), **logs}


def _token_terms(targets: Targets, positions: torch.Tensor, ce: torch.Tensor, kd: torch.Tensor | None,
                 totals: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    loss = ce.sum() * 0.0
    kd_sum = None if kd is None else kd.sum() * 0.0
    for group, weights in targets.tokens.items():
        w = weights[positions].to(ce.dtype)
        total = totals[f"tokens:{group}"].to(ce.device).clamp(min=1e-8)
        coef = targets.token_coefs[group]
        loss = loss + coef * (w * ce).sum() / total
        if kd is not None:
            kd_sum = kd_sum + coef * (w * kd).sum() / total
    return loss, kd_sum


def _logs(batch, targets: Targets, positions, ce, out) -> dict[str, torch.Tensor]:
    """Per micro-batch, for the training curve: mean CE of each span's trained tokens, the mean of
    each sequence-level term, and whatever the method logs."""
    logs = dict(out.logs)
    trained = torch.zeros_like(positions)
    for w in targets.tokens.values():
        trained |= w != 0
    spans = batch["spans"][:, 1:][positions]
    trained = trained[positions]
    for code, name in ((ANSWER, "ce_answer"), (RATIONALE, "ce_rationale")):
        mask = (spans == code) & trained
        if mask.any():
            logs[name] = ce[mask].mean()
    for group, mask in targets.sequences.items():
        if (mask > 0).any():
            logs[group] = out.sequences[group].detach()[mask > 0].mean()
    return logs
