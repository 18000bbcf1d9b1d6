"""KPOD's keypoint mask network and the small answer model that judges it (see kpod.py): which
rationale tokens matter is learnt by how much dropping them hurts the answer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TokenEncoder(nn.Module):
    """The mask network's reader: frozen token embeddings -> projection + position (counted from
    the rationale's end, where conclusions sit) -> a residual convolution that lets each token see
    a few neighbours. Cheap on purpose: it trains in seconds on a CPU."""

    def __init__(self, d_in: int, d: int, max_len: int) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        self.pos = nn.Embedding(max_len, d)
        self.conv = nn.Conv1d(d, d, kernel_size=5, padding=2)

    def forward(self, emb: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        lengths = (~pad).sum(1, keepdim=True)
        from_end = (lengths - 1 - torch.arange(emb.size(1), device=emb.device)).clamp(min=0)
        x = F.gelu(self.inp(emb) + self.pos(from_end)) * (~pad).unsqueeze(-1)
        return x + F.gelu(self.conv(x.transpose(1, 2)).transpose(1, 2))


class AnswerModel(nn.Module):
    """Predicts the answer's tokens (as a bag, over the tokens answers use) from the *kept*
    rationale tokens only. Attention pooling over kept tokens (scored by token and distance from
    the end), so a masked token leaves no trace, not even the rationale's length. A candidate answer
    token is scored by its similarity to the pooled rationale (through a learnt map that starts as
    the identity), so "the rationale states 7" points at "7" from the start and the answer model
    judges what the kept tokens say, rather than memorising examples."""

    def __init__(self, d_in: int, d: int, max_len: int, answer_emb: torch.Tensor) -> None:
        super().__init__()
        self.token = nn.Sequential(nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d))
        self.pos = nn.Embedding(max_len, d)
        self.query = nn.Parameter(torch.randn(d) / d ** 0.5)
        self.map = nn.Linear(d, d)
        nn.init.eye_(self.map.weight)
        self.register_buffer("answer_emb", answer_emb)  # frozen embeddings of the candidate tokens

    def forward(self, emb: torch.Tensor, pad: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over the candidate answer tokens; ``keep`` is 0 or 1 per token."""
        lengths = (~pad).sum(1, keepdim=True)
        from_end = (lengths - 1 - torch.arange(emb.size(1), device=emb.device)).clamp(min=0)
        h = self.token(emb)
        scores = ((h + self.pos(from_end)) @ self.query).masked_fill(pad, -1e4)
        attention = keep * (scores - scores.max(1, keepdim=True).values.detach()).exp()
        pooled = (attention.unsqueeze(-1) * h).sum(1) / (attention.sum(1, keepdim=True) + 1e-6)
        return (self.map(pooled) @ self.token(self.answer_emb).T).log_softmax(-1)


class MaskNetwork(nn.Module):
    """One keep-logit per rationale token."""

    def __init__(self, d_in: int, d: int, max_len: int) -> None:
        super().__init__()
        self.enc = TokenEncoder(d_in, d, max_len)
        self.head = nn.Linear(d, 1)
        nn.init.constant_(self.head.bias, 2.0)  # start by keeping everything, then learn what to drop

    def forward(self, emb: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(emb, pad)).squeeze(-1)


def answer_nll(logp: torch.Tensor, answer_ids: torch.Tensor) -> torch.Tensor:
    """Per example: mean negative log-probability of its answer tokens (``answer_ids`` padded with -1)."""
    valid = answer_ids >= 0
    picked = logp.gather(1, answer_ids.clamp(min=0))
    return -(picked * valid).sum(1) / valid.sum(1).clamp(min=1)
