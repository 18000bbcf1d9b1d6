"""The student as body + LM head, so the head runs only where a token is predicted.

A causal LM's forward is ``logits = head(decoder(inputs))``; the decoder is ``get_decoder()`` (PEFT
wrappers forward it to the wrapped model, LoRA layers included) and the head is
``get_output_embeddings()``. Between the two some architectures transform the logits: gemma-2/3
soft-cap them (``final_logit_softcapping``), Cohere multiplies by ``logit_scale``, Granite divides by
``logits_scaling``; those are applied here. Any other architecture is checked once on a probe input
against the model's own forward; where the two disagree, ``LMHead.plain`` is set and the body returns
the model's full logits (the head is then the identity): correct, just without the memory saving.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)
_ATTR = "_rd_lm_head"


class LMHead:
    """``body(**inputs) -> hidden [B, T, d]`` and ``logits(hidden rows) -> [N, V]`` of one model."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.plain = False
        self.decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        self.output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        config = getattr(model, "config", None)
        self.softcap = getattr(config, "final_logit_softcapping", None)
        self.scale = getattr(config, "logit_scale", None)        # Cohere: logits * scale
        self.divide = getattr(config, "logits_scaling", None)    # Granite: logits / scaling
        if self.decoder is None or self.output is None or self.decoder is model:
            self._fall_back("no separate decoder/output embeddings")
        else:
            self._check()

    def _fall_back(self, why: str) -> None:
        self.plain = True
        log.warning("LM head of %s not split off (%s): training computes full logits",
                    type(self.model).__name__, why)

    @torch.no_grad()
    def _check(self) -> None:
        """Our body+head against the model's own forward on a short probe (eval mode, no grad)."""
        was_training = self.model.training
        self.model.eval()
        try:
            vocab = self.output.weight.size(0)
            device = self.output.weight.device
            ids = (torch.arange(1, 9, device=device) * 7919 % vocab).unsqueeze(0)
            mask = torch.ones_like(ids)
            want = self.model(input_ids=ids, attention_mask=mask).logits.float()
            got = self.logits(self.body(input_ids=ids, attention_mask=mask)[0]).float()
            if got.shape != want[0].shape or not torch.allclose(got, want[0], rtol=1e-3, atol=1e-3):
                self._fall_back("its forward transforms the logits in a way not handled here")
        except (TypeError, AttributeError, RuntimeError) as e:
            self._fall_back(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        finally:
            self.model.train(was_training)

    def body(self, **inputs) -> torch.Tensor:
        """Last hidden states ``[B, T, d]`` (the head's input); full logits when ``plain``."""
        if self.plain:
            return self.model(**inputs).logits
        return self.decoder(**inputs).last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of hidden-state rows ``[..., d]``, transformed as the architecture's forward does."""
        if self.plain:
            return hidden
        out = self.output(hidden)
        if self.scale is not None:
            out = out * self.scale
        if self.divide is not None:
            out = out / self.divide
        if self.softcap is not None:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out


def lm_head(model: nn.Module) -> LMHead:
    """The (cached) body/head split of ``model``."""
    head = model.__dict__.get(_ATTR)
    if head is None:
        head = LMHead(model)
        model.__dict__[_ATTR] = head  # not an nn.Module attribute: stays out of state_dict and .to()
    return head
