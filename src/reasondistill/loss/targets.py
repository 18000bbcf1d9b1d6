"""The contract between a method and the trainer.

A method declares, from a batch alone (no forward pass), what it trains: ``Targets``. That lets the
trainer count a whole optimiser step's targets (every micro-batch, every process) before the first
forward, and normalise every micro-batch's sum by that count, as TRL/transformers do with
``num_items_in_batch``; so batch 8 x accumulation 1 and batch 2 x accumulation 4 give one gradient.

Then the method's forward returns a ``StudentOutput``: the student's last hidden states (what the LM
head reads), plus any sequence-level loss. The trainer computes the token losses on exactly the
declared positions with the declared weights, and adds token-level KD on the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Targets:
    """What one micro-batch trains.

    ``tokens``: group name -> ``[B, T-1]`` float weights, position ``p`` predicting token ``p+1``
    (0 = not trained). Each group is normalised by its own total weight over the optimiser step, then
    multiplied by ``token_coefs[group]``: one group over all targets is one NTP loss; an ``answer`` and
    a ``rationale`` group are PT's two span means with their weights.
    ``sequences``: group name -> ``[B]`` 0/1 mask of the sequences a sequence-level term covers,
    normalised by the number of such sequences over the step, times ``sequence_coefs[group]``.
    ``observe``: ``[B, T-1]`` bool, positions whose (detached) cross-entropy the method wants to see
    in ``Method.observe`` although they are not trained (kpod's difficulty of the steps still given).
    """

    tokens: dict[str, torch.Tensor]
    token_coefs: dict[str, float]
    sequences: dict[str, torch.Tensor] = field(default_factory=dict)
    sequence_coefs: dict[str, float] = field(default_factory=dict)
    observe: torch.Tensor | None = None

    def counts(self) -> dict[str, torch.Tensor]:
        """This micro-batch's normalisers: total weight per token group, sequences per sequence group."""
        out = {f"tokens:{g}": w.float().sum() for g, w in self.tokens.items()}
        out.update({f"sequences:{g}": m.float().sum() for g, m in self.sequences.items()})
        return out

    def positions(self) -> torch.Tensor:
        """``[B, T-1]`` bool: every position whose next-token loss is needed (trained or observed)."""
        any_weight = None
        for w in self.tokens.values():
            any_weight = (w != 0) if any_weight is None else any_weight | (w != 0)
        if self.observe is not None:
            any_weight = self.observe if any_weight is None else any_weight | self.observe
        return any_weight


@dataclass
class StudentOutput:
    """A method's forward on a micro-batch: ``hidden`` ``[B, T, d]`` are the student's last hidden
    states (the LM head's input; with a head that cannot be split off, its logits) and ``head`` turns
    them into logits; ``sequences`` holds per-sequence losses ``[B]`` by group; ``logs`` is logged."""

    hidden: torch.Tensor
    head: Any
    sequences: dict[str, torch.Tensor] = field(default_factory=dict)
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
