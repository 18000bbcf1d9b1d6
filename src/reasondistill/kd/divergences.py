"""One module per token-level KD loss: per-token divergence between the student's logits and the
teacher's log-probabilities (or logits).

Inputs are ``[N, V]`` student logits and ``[N, V]`` teacher scores, or ``[N, k]`` teacher scores on
the support ``ids`` ``[N, k]`` (stored top-k; the student is gathered there and both are renormalised
over the k tokens). Logits are divided by the temperature and the result multiplied by its square,
so gradients keep their scale.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError


def log_probs(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
              ids: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    s = student.float()
    if ids is not None:
        s = s.gather(-1, ids)
    return (s / temperature).log_softmax(-1), (teacher.float() / temperature).log_softmax(-1)


class Divergence(nn.Module):
    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        s, t = log_probs(student, teacher, self.temperature, ids)
        return self.between(s, t) * self.temperature ** 2

    def between(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ForwardKL(Divergence):
    """KL(teacher ‖ student): mode-covering, the classic Hinton KD."""

    def between(self, s, t):
        return (t.exp() * (t - s)).sum(-1)


class ReverseKL(Divergence):
    """KL(student ‖ teacher): mode-seeking, lets a small student drop what it cannot fit."""

    def between(self, s, t):
        return (s.exp() * (s - t)).sum(-1)


class JSD(Divergence):
    """Generalised Jensen-Shannon (GKD): β·KL(t‖m) + (1−β)·KL(s‖m), m = β·t + (1−β)·s."""

    def __init__(self, temperature: float = 1.0, beta: float = 0.5) -> None:
        super().__init__(temperature)
        self.beta = float(beta)

    def between(self, s, t):
        m = torch.logsumexp(torch.stack([t + math.log(self.beta), s + math.log(1 - self.beta)]), dim=0)
        return self.beta * (t.exp() * (t - m)).sum(-1) + (1 - self.beta) * (s.exp() * (s - m)).sum(-1)


class TAIDLoss(Divergence):
    """TAID: the target is softmax((1−t)·student.detach() + t·teacher) in log space, and the loss is
    the cross-entropy of the student against it (as TAID's official code: the same gradient as
    KL(target ‖ student), plus the target's entropy, so the value that drives the adaptive t is the
    cross-entropy). ``t`` is set by the schedule before each use."""

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__(temperature)
        self.t = 1.0

    def between(self, s, t):
        target = ((1 - self.t) * s.detach() + self.t * t).log_softmax(-1)
        return -(target.exp() * s).sum(-1)


def make_divergence(kind: str, *, temperature: float = 1.0, beta: float = 0.5) -> Divergence:
    if kind == "forward_kl":
        return ForwardKL(temperature)
    if kind == "reverse_kl":
        return ReverseKL(temperature)
    if kind == "jsd":
        return JSD(temperature, beta)
    if kind == "taid":
        return TAIDLoss(temperature)
    raise UserError(f"kd_loss must be one of forward_kl, reverse_kl, jsd, taid, not '{kind}'")


def divergence(student_logits: torch.Tensor, teacher_logp: torch.Tensor, kind: str, *,
               temperature: float = 1.0, ids: torch.Tensor | None = None, beta: float = 0.5,
               taid_t: float = 1.0) -> torch.Tensor:
    """Per-token divergence ``[N]``, functional form of the modules above."""
    module = make_divergence(kind, temperature=temperature, beta=beta)
    if isinstance(module, TAIDLoss):
        module.t = taid_t
    return module(student_logits, teacher_logp, ids)
