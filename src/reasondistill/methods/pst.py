"""pst (Post-Semantic-Thinking): PT, with the rationale learnt in a semantic space.

The student reads ``question -> answer -> rationale`` exactly as in PT and answers the same way
(answer first, stop early). What changes is how the rationale is learnt: instead of (mostly)
imitating the teacher's words, the student's hidden states over its rationale are pooled to one
vector ``h``, projected by a small trainable ``P`` and pulled towards ``E(r)``, the teacher
rationale's embedding by a frozen sentence encoder:

    loss = w_y·CE(answer) + w_r·CE(rationale) + λ_sem·(1 − cos(P(h), E(r)))

with ``w_r`` small (default 0.1), so a paraphrase of the right reasoning costs little while the
answer keeps its full weight. ``E(r)`` is computed once before training and cached on disk; the
projection exists only for training and is saved beside the student for inspection.
Options: ``pooling`` "last" (the hidden state at the last rationale token) or "attention"
(a learnt query attends over the rationale span); ``alignment`` "cosine" or "infonce" (the batch's
other rationales are negatives); ``encoder`` any sentence-transformers id/path, the packaged
MiniLM by default, or "student" (the student at initialisation, mean-pooled, frozen).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..options import opt
from ..tasks import Example
from .base import RATIONALE, Feature
from .post_thinking import PostThinking


class Projection(nn.Module):
    """Linear–GELU–Linear from the student's hidden size to the encoder's space, with optional
    attention pooling over the rationale span."""

    def __init__(self, d_model: int, d_target: int, attention_pooling: bool) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.zeros(d_model)) if attention_pooling else None
        self.net = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_target))

    def pool(self, hidden: torch.Tensor, span_mask: torch.Tensor) -> torch.Tensor:
        """One vector per sequence from the hidden states of its rationale tokens."""
        if self.query is None:  # the last rationale token has read the whole rationale
            positions = torch.arange(hidden.size(1), device=hidden.device)
            last = (span_mask * positions).argmax(dim=1)
            return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        scores = (hidden @ self.query) / hidden.size(-1) ** 0.5
        # A row whose rationale was cut off entirely attends to nothing (zeros, not NaN); the loss
        # leaves such rows out (``targets``).
        scores = scores.masked_fill(span_mask == 0, float("-inf"))
        empty = span_mask.sum(dim=1, keepdim=True) == 0
        weights = scores.masked_fill(empty, 0.0).softmax(dim=1).masked_fill(empty, 0.0)
        return (weights.unsqueeze(-1) * hidden).sum(dim=1)

    def forward(self, hidden: torch.Tensor, span_mask: torch.Tensor) -> torch.Tensor:
        return self.net(self.pool(hidden, span_mask).to(self.net[0].weight.dtype))


class PostSemanticThinking(PostThinking):
    name = "pst"
    answer_first = True
    token_layout = "post_thinking"  # PT's token sequences: stored teacher logits of PT serve PST
    packs = False  # the alignment pools each rationale's hidden states: one sequence per row
    class Options(PostThinking.Options):
        rationale_weight: float = opt(0.1, "weight of the rationale tokens' cross-entropy (small: paraphrases "
                                      "of the right reasoning cost little)", ge=0)
        semantic_weight: float = opt(1.0, "weight of the semantic alignment term", ge=0)
        pooling: Literal["last", "attention"] = opt("last", "one vector per rationale: its last token's hidden "
                                                    "state, or a learnt attention over the span")
        alignment: Literal["cosine", "infonce"] = opt("cosine", "1 - cos to the teacher rationale's embedding, or "
                                                      "InfoNCE with the batch's other rationales as negatives")
        temperature: float = opt(0.05, "infonce: softmax temperature", gt=0)
        encoder: str = opt("all-MiniLM-L6-v2", "sentence encoder (sentence-transformers id or path), or "
                           "'student' (the student at initialisation)")

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.pooling not in ("last", "attention"):
            raise UserError(f"pst: pooling must be 'last' or 'attention', not '{self.pooling}'")
        if self.alignment not in ("cosine", "infonce"):
            raise UserError(f"pst: alignment must be 'cosine' or 'infonce', not '{self.alignment}'")
        self.projection: Projection | None = None
        self.embeddings: torch.Tensor | None = None  # E(r) per distinct rationale
        self.index: dict[str, int] = {}

    def prepare(self, examples: list[Example], tokenizer, model) -> None:
        rationales = sorted({ex.rationale.strip() for ex in examples if ex.rationale})
        self.index = {text: i for i, text in enumerate(rationales)}
        if self.encoder == "student":
            targets = student_embeddings(model, tokenizer, rationales)
        else:
            from ..models.encoder import SemanticEncoder
            targets = SemanticEncoder(self.encoder).encode(rationales)
        self.embeddings = F.normalize(targets.float(), dim=-1)
        self.projection = Projection(model.config.hidden_size, self.embeddings.size(1), self.pooling == "attention")

    def modules(self) -> dict[str, nn.Module]:
        return {"projection": self.projection} if self.projection is not None else {}

    def features(self, example: Example, tokenizer) -> list[Feature]:
        [feature] = super().features(example, tokenizer)
        feature.extras["target_index"] = self.index[example.rationale.strip()]
        return [feature]

    def targets(self, batch):
        """PT's two span losses, plus the alignment per sequence that has a rationale token."""
        targets = super().targets(batch)
        targets.sequences["align"] = ((batch["spans"] == RATIONALE).sum(1) > 0).float()
        targets.sequence_coefs["align"] = float(self.semantic_weight)
        return targets

    def loss(self, model, batch):
        out = self.forward_hidden(model, batch)  # the LM head's input is the space PST pools
        span_mask = (batch["spans"] == RATIONALE).long()
        predicted = F.normalize(self.projection(out.hidden, span_mask).float(), dim=-1)
        index = batch["target_index"]
        targets = self.embeddings.to(predicted.device)[index]
        if self.alignment == "cosine":
            align = 1 - (predicted * targets).sum(-1)
        else:  # the batch's other rationales are negatives; a copy of one's own rationale is not
            logits = predicted @ targets.T / self.temperature
            twins = (index[:, None] == index[None, :]) & ~torch.eye(len(index), dtype=torch.bool, device=index.device)
            logits = logits.masked_fill(twins, float("-inf"))
            align = F.cross_entropy(logits, torch.arange(len(logits), device=logits.device), reduction="none")
        out.sequences["align"] = align
        return out


@torch.no_grad()
def student_embeddings(model, tokenizer, texts: list[str], batch_size: int = 32) -> torch.Tensor:
    """Mean-pooled last hidden states of the (initial, frozen) student: the 'student' encoder."""
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    vectors = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                        max_length=512, add_special_tokens=False).to(device)
        hidden = model(**enc, output_hidden_states=True).hidden_states[-1].float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        vectors.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu())
    tokenizer.padding_side = side
    return torch.cat(vectors)
