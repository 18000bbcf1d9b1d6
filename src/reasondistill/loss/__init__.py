"""What a training step minimises, below every method and the trainer.

- ``targets``: what a method declares it trains on a batch (per-token weights per group, per-sequence
  masks), and what its forward hands the trainer (hidden states, sequence-level losses);
- ``head``: the student split into its body (hidden states) and its LM head, for any HF causal LM;
- ``chunked``: next-token cross-entropy (and any per-token term such as KD) computed from hidden
  states in chunks, so the ``batch x length x vocab`` logits never exist;
- ``liger``: liger-kernel's fused linear cross-entropy in place of the chunks, on CUDA where it applies.
"""

from .chunked import token_losses
from .head import LMHead, lm_head
from .targets import StudentOutput, Targets

__all__ = ["LMHead", "StudentOutput", "Targets", "lm_head", "token_losses"]
