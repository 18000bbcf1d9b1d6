"""semcot (semantically aligned implicit tokens): K vectors replace the rationale; answers come at once.

Recipe (METHODS.md):
- Generator: a small LM (``--assistant``) reads ``Question: x`` plus K placeholder tokens; its
  last-layer states there, through ``Linear(d_gen, d_main)``, are the implicit reasoning vectors,
  spliced into the frozen main model's prompt after the question, before ``Answer:``.
- Semantic scorer: the packaged all-MiniLM-L6-v2, frozen, plus a trainable linear map on top (the
  identity at start). Before the main loop the map is trained contrastively on pairs (full
  rationale, condensed rationale) with in-batch negatives, then frozen: it scores what two texts of
  reasoning share. The condensed text is ``meta['condensed_reasoning']`` (the SemCoT data) or else the
  rationale's last sentence. MiniLM embeddings are computed once and cached, never per step.
- Alignment: an adapter (LayerNorm, Linear) maps the mean of an example's K implicit vectors into
  the scorer's space, so the scorer reads implicit reasoning too. With ``alignment=infonce`` (the
  default) the implicit and explicit reasoning of the same example are the positives and the batch's
  other rationales the negatives (``temperature``); ``cosine`` is the original's ``1 − cos``, which
  the adapter can shrink by pointing every example at the targets' mean, a shortcut InfoNCE closes.
- Loss: ``α·align + (1 − α)·CE(answer)`` on the main model's answer tokens (α 0.25 for arithmetic,
  0.5–0.75 otherwise in the original; ``alpha``, default 0.5). The generator, the bridge and the
  adapter train together in one loop (the original trains the bridge first, then the generator);
  the main model and MiniLM stay frozen.
- Inference: K vectors (``k_infer``, default 1; ``k_train`` 5), then the answer only, stopping at the
  end of its line: time to answer near answer_only's plus one generator pass. Answers are scored by
  the same strict parser as every method (not "any number in the output matches").
The run folder keeps the trained generator, bridge, adapter and scorer map, and references to the
frozen main model and encoder.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..tasks import Example, extract_answer
from .base import ANSWER, Feature, format_question, newline_token_ids, span_losses
from .softcot import SoftThoughtMethod, count_params


def condensed(example: Example) -> str:
    """A short version of the example's reasoning: the data's own, or the rationale's last sentence."""
    given = str(example.meta.get("condensed_reasoning") or "").strip()
    return given or re.split(r"(?<=[.!?])\s+", example.rationale.strip())[-1]


def info_nce(a: torch.Tensor, b: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy of picking each row of ``a``'s own partner among the rows of ``b``. Rows with
    the same key (the same text twice in a batch) are not negatives of each other."""
    logits = a @ b.T / temperature
    twins = (keys[:, None] == keys[None, :]) & ~torch.eye(len(keys), dtype=torch.bool, device=keys.device)
    logits = logits.masked_fill(twins, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(keys), device=logits.device))


def train_scorer(full: torch.Tensor, short: torch.Tensor, keys: torch.Tensor, steps: int,
                 temperature: float) -> tuple[nn.Linear, dict]:
    """The scorer's trainable map on frozen MiniLM embeddings, fitted so a rationale and its condensed
    version score as the same reasoning and other examples' reasoning does not. Cheap: one linear
    layer on cached vectors, minibatches of 256."""
    d = full.size(1)
    scorer = nn.Linear(d, d)
    with torch.no_grad():
        scorer.weight.copy_(torch.eye(d))
        scorer.bias.zero_()
    optimizer = torch.optim.Adam(scorer.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        pick = torch.randperm(len(full), generator=generator)[:256]
        a, b = F.normalize(scorer(full[pick]), dim=-1), F.normalize(scorer(short[pick]), dim=-1)
        loss = info_nce(a, b, keys[pick], temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    scorer.requires_grad_(False)
    return scorer, {"scorer_loss_start": losses[0] if losses else None, "scorer_loss_end": losses[-1] if losses else None}


class SemCoT(SoftThoughtMethod):
    name = "semcot"
    second_role = "generator"
    layout_options = ("k_train", "k_infer")
    trains_second = True
    answer_first = True
    defaults = {"assistant": None, "projection": "linear", "stage": "bridge", "k_train": 5, "k_infer": 1,
                "alpha": 0.5, "alignment": "infonce", "temperature": 0.1, "encoder": "all-MiniLM-L6-v2",
                "scorer_steps": 100}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for key in ("k_train", "k_infer"):
            if not isinstance(self.options[key], int) or self.options[key] < 1:
                raise UserError(f"semcot: {key} must be a positive whole number, not {self.options[key]!r}")
        if not 0 <= self.alpha <= 1:
            raise UserError(f"semcot: alpha must be between 0 and 1, not {self.alpha}")
        if self.alignment not in ("infonce", "cosine"):
            raise UserError(f"semcot: alignment must be 'infonce' or 'cosine', not '{self.alignment}'")
        self.scorer: nn.Module | None = None
        self.adapter: nn.Module | None = None
        self.targets: torch.Tensor | None = None
        self.target_index: dict[str, int] = {}
        self.scorer_info: dict = {}

    def n_slots(self, training: bool) -> int:
        return self.k_train if training else self.k_infer

    def second_text(self, example: Example) -> str:
        return format_question(example)

    def main_parts(self, example: Example) -> tuple[str, str]:
        return format_question(example), "Answer:"

    def target_pieces(self, example: Example) -> list[tuple[str, int]]:
        return [(f" {example.answer}", ANSWER), ("<eos>", ANSWER)]

    def stop_ids(self, tokenizer) -> list[int]:
        return newline_token_ids(tokenizer)

    def parse(self, text: str, example: Example):
        return extract_answer(text.strip(), example.answer_type, example.choices), None

    def prepare(self, examples: list[Example], tokenizer, model) -> None:
        from ..models.encoder import SemanticEncoder
        super().prepare(examples, tokenizer, model)
        if self.main_stage:
            return
        self.second.requires_grad_(True)  # loaded frozen; the generator is trained here
        first: dict[str, Example] = {}
        for ex in examples:
            first.setdefault(ex.rationale.strip(), ex)
        rationales = sorted(first)
        self.target_index = {text: i for i, text in enumerate(rationales)}
        shorts = [condensed(first[r]) for r in rationales]
        short_ids = {text: i for i, text in enumerate(sorted(set(shorts)))}
        encoder = SemanticEncoder(self.encoder)
        full = encoder.encode(rationales).float()
        self.scorer, self.scorer_info = train_scorer(full, encoder.encode(shorts).float(),
                                                     torch.tensor([short_ids[s] for s in shorts]),
                                                     self.scorer_steps, self.temperature)
        with torch.no_grad():
            self.targets = F.normalize(self.scorer(full), dim=-1)
        d_main = model.get_input_embeddings().embedding_dim
        self.adapter = nn.Sequential(nn.LayerNorm(d_main), nn.Linear(d_main, full.size(1)))
        self.frozen_params += count_params(encoder.model)
        self.refs["encoder"] = self.encoder

    def modules(self) -> dict[str, nn.Module]:
        mods = dict(super().modules())
        if self.second is not None:
            mods["generator"] = self.second
        for name in ("adapter", "scorer"):  # training devices, kept for inspection; answers need neither
            if getattr(self, name) is not None:
                mods[name] = getattr(self, name)
        return mods

    def run_info(self) -> dict:
        return {**super().run_info(), **self.scorer_info}

    def features(self, example: Example, tokenizer) -> list[Feature]:
        features = super().features(example, tokenizer)
        if not self.main_stage:
            features[0].extras["target_index"] = self.target_index[example.rationale.strip()]
        return features

    def loss(self, model, batch):
        if self.main_stage:
            ce = span_losses(self.run_model(model, batch).logits, batch)[ANSWER]
            return {"loss": ce, "ce_answer": ce}
        vectors = self.batch_thoughts(batch)
        out = self.run_model(model, {**batch, "vectors": vectors})
        ce = span_losses(out.logits, batch)[ANSWER]
        implicit = F.normalize(self.adapter(vectors.float().mean(dim=1)), dim=-1)
        targets = self.targets.to(implicit.device)[batch["target_index"]]
        cosine = (implicit * targets).sum(-1).mean()
        if self.alignment == "infonce":
            align = info_nce(implicit, targets, batch["target_index"], self.temperature)
        else:
            align = 1 - cosine
        return {"loss": self.alpha * align + (1 - self.alpha) * ce, "ce_answer": ce, "align": align,
                "cosine": cosine}
