"""semcot (semantically aligned implicit tokens): K vectors replace the rationale; answers come at once.

Recipe (METHODS.md and the original code), in three stages:

1. The judge (``prepare``, before the main loop). A copy of ``judge_layers`` layers of the frozen
   main model from layer ``judge_start`` on (default: 5 layers from the middle, layers 16-20 of a
   32-layer model as in the original; the upper half of a 2-layer one), its final norm, mean
   pooling over the sequence and a linear head. It reads sequences of vectors in the main model's
   space: for a text, the main model's hidden states entering layer ``judge_start``
   (``hidden_states[judge_start]``; the token embeddings when it is 0). It is trained
   contrastively (InfoNCE, in-batch negatives, ``judge_steps``) so that a rationale and its
   condensed version embed alike and other examples' reasoning does not; then it is frozen and
   each training rationale's embedding is computed once and cached. The condensed text is
   ``meta['condensed_reasoning']`` (the SemCoT data) or else the rationale's last sentence.
2. The bridge (the first ``bridge_fraction`` of the steps). A generator LM (``--assistant``) reads
   ``Question: x`` plus K placeholder tokens; its last-layer states there, through a trainable
   ``Linear(d_gen, d_main)``, are the implicit reasoning vectors, spliced into the frozen main
   model's prompt after the question, before ``Answer:``. In this stage only the bridge learns
   (the generator's states carry no gradient).
3. The generator (the remaining steps): generator and bridge learn together.

Loss in stages 2 and 3: ``α·align + (1 − α)·CE(answer)`` on the main model's answer tokens, where
``align`` compares, through the one frozen judge, the K implicit vectors (read as a K-long
sequence) with the rationale (its cached embedding). ``alignment=cosine`` (the default, the
original's ``1 − cos``) or ``infonce`` (the batch's other rationales as negatives, twins masked).
α is 0.25 for arithmetic and 0.5–0.75 otherwise in the original (``alpha``, default 0.5). Nothing
trainable sits between the vectors and the judge, so the alignment can only be met by vectors the
judge reads as the rationale's reasoning, not by an adapter learning to tell examples apart.

Where the paper leaves room (our choices):
- The implicit vectors enter the judge as they are, at the level of ``hidden_states[judge_start]``,
  as in the original, although they are input embeddings of the main model. With the default
  start in the middle of the model that is a change of level the frozen judge must bridge; the
  generator is what adapts to it.
- The original trains the projection first at lr 1e-3 (2 epochs), then everything at lr 1e-7
  (10 epochs), keeping the best state by validation loss. Here one trainer learning rate serves
  both stages, ``bridge_fraction`` (default 0.2) splits the steps, and the last state is kept.
- The judge is trained once on the training rationales with its own Adam (``judge_lr``); it is a
  training device, not saved (answers need neither it nor the rationales).

Inference: K vectors (``k_infer``, default 1; ``k_train`` 5), then the answer only, stopping at the
end of its line: time to answer near answer_only's plus one generator pass. Answers are scored by
the same strict parser as every method (not "any number in the output matches"). The run folder
keeps the trained generator and bridge and a reference to the frozen main model.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..options import opt
from ..tasks import Example, extract_answer
from ..loss import Targets
from .base import ANSWER, Feature, format_question, newline_token_ids, token_weights
from .softcot import SoftThoughtMethod, count_params


def condensed(example: Example) -> str:
    """A short version of the example's reasoning: the data's own, or the rationale's last sentence."""
    given = str(example.meta.get("condensed_reasoning") or "").strip()
    return given or re.split(r"(?<=[.!?])\s+", example.rationale.strip())[-1]


def info_nce(a: torch.Tensor, b: torch.Tensor, keys: torch.Tensor, temperature: float,
             reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of picking each row of ``a``'s own partner among the rows of ``b``. Rows with
    the same key (the same text twice in a batch) are not negatives of each other."""
    logits = a @ b.T / temperature
    twins = (keys[:, None] == keys[None, :]) & ~torch.eye(len(keys), dtype=torch.bool, device=keys.device)
    logits = logits.masked_fill(twins, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(keys), device=logits.device), reduction=reduction)


class Judge(nn.Module):
    """Upper layers of a (frozen) causal LM, copied, plus mean pooling and a linear head: one
    vector per sequence of hidden states. The copy is a slice of the model's own base class, so
    rotary positions, the causal mask and the final norm are the model's."""

    def __init__(self, main: nn.Module, start: int, layers: int) -> None:
        super().__init__()
        base = main.base_model
        self.start = start
        upper = copy.deepcopy(base)
        upper.layers = nn.ModuleList(list(upper.layers)[start:start + layers])
        upper.config = copy.deepcopy(base.config)
        upper.config.num_hidden_layers = len(upper.layers)
        if getattr(upper.config, "layer_types", None):
            upper.config.layer_types = list(upper.config.layer_types)[start:start + layers]
        upper.embed_tokens = None  # it reads vectors, never token ids
        self.upper = upper
        d = base.config.hidden_size
        self.head = nn.Linear(d, d)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, d) unit vectors from states (batch, T, d) with a 0/1 mask (batch, T)."""
        # No KV cache: the copied layers keep their original indices, which a cache sized for the
        # slice would not hold (and a judge scores whole sequences, it never decodes).
        hidden = self.upper(inputs_embeds=states.to(self.head.weight.dtype), attention_mask=mask,
                            use_cache=False).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
        return F.normalize(self.head(pooled).float(), dim=-1)


@torch.no_grad()
def main_states(model, tokenizer, texts: list[str], layer: int, max_tokens: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen main model's hidden states entering ``layer`` over each text (right-padded), and
    the mask: what the judge reads for explicit reasoning."""
    rows = [tokenizer(f" {t.strip()}", add_special_tokens=False).input_ids[:max_tokens] or [tokenizer.eos_token_id]
            for t in texts]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    device = next(model.parameters()).device
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), output_hidden_states=True)
    return out.hidden_states[layer], mask.to(device)


def train_judge(judge: Judge, full: list[str], short: list[str], keys: torch.Tensor, encode, *, steps: int,
                lr: float, batch_size: int, temperature: float) -> dict:
    """Fit the judge so a rationale and its condensed version embed alike (InfoNCE, in-batch
    negatives, pairs sharing a condensed text not each other's negatives); then freeze it."""
    judge.requires_grad_(True)
    optimizer = torch.optim.Adam(judge.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        pick = torch.randperm(len(full), generator=generator)[:batch_size].tolist()
        a = judge(*encode([full[i] for i in pick]))
        b = judge(*encode([short[i] for i in pick]))
        loss = info_nce(a, b, keys[pick].to(a.device), temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    judge.zero_grad(set_to_none=True)
    judge.requires_grad_(False)
    judge.eval()
    return {"judge_loss_start": losses[0] if losses else None, "judge_loss_end": losses[-1] if losses else None}


class SemCoT(SoftThoughtMethod):
    name = "semcot"
    second_role = "generator"
    layout_options = ("k_train", "k_infer")
    trains_second = True
    answer_first = True
    class Options(SoftThoughtMethod.Options):
        k_train: int = opt(5, "implicit reasoning vectors in training", ge=1)
        k_infer: int = opt(1, "implicit reasoning vectors at inference", ge=1)
        alpha: float = opt(0.5, "weight of the alignment term against the answer's cross-entropy", ge=0, le=1)
        alignment: Literal["cosine", "infonce"] = opt("cosine", "1 - cos between the judge's embeddings, or "
                                                      "InfoNCE with the batch's other rationales as negatives")
        temperature: float = opt(0.1, "infonce: softmax temperature", gt=0)
        bridge_fraction: float = opt(0.2, "share of the steps that train the bridge alone, before the generator",
                                     ge=0, le=1)
        judge_start: int | None = opt(None, "first main-model layer the judge copies (default: the middle)", ge=0)
        judge_layers: int = opt(5, "most layers the judge copies", ge=1)
        judge_steps: int = opt(100, "training steps of the judge on rationale/condensed pairs", ge=0)
        judge_lr: float = opt(1e-3, "learning rate of the judge", gt=0)
        judge_batch_size: int = opt(32, "pairs per judge training step", ge=1)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for key in ("k_train", "k_infer", "judge_layers", "judge_batch_size"):
            if not isinstance(self.options[key], int) or self.options[key] < 1:
                raise UserError(f"semcot: {key} must be a positive whole number, not {self.options[key]!r}")
        if not 0 <= self.alpha <= 1:
            raise UserError(f"semcot: alpha must be between 0 and 1, not {self.alpha}")
        if not 0 <= self.bridge_fraction <= 1:
            raise UserError(f"semcot: bridge_fraction must be between 0 and 1, not {self.bridge_fraction}")
        if self.alignment not in ("infonce", "cosine"):
            raise UserError(f"semcot: alignment must be 'infonce' or 'cosine', not '{self.alignment}'")
        self.judge: Judge | None = None
        self.rationale_targets: torch.Tensor | None = None  # the judge's embedding of each rationale
        self.target_index: dict[str, int] = {}
        self.judge_info: dict = {}
        self.generator_stage = self.bridge_fraction == 0

    def n_slots(self, training: bool) -> int:
        return self.k_train if training else self.k_infer

    def second_text(self, example: Example) -> str:
        return format_question(example)

    def main_parts(self, example: Example) -> tuple[str, str]:
        return format_question(example), "Answer:"

    def target_pieces(self, example: Example) -> list[tuple[str, int]]:
        return [(f" {example.answer}", ANSWER), ("<eos>", ANSWER)]

    def row_rules(self, tokenizer, *, explain: bool = True, think_budget: int | None = None) -> dict:
        return {**super().row_rules(tokenizer), "explain": False}  # no rationale follows the answer line

    def parse(self, text: str, example: Example):
        return extract_answer(text.strip(), example.answer_type, example.choices), None

    # ----- stage 1: the judge --------------------------------------------------------------------
    def prepare(self, examples: list[Example], tokenizer, model) -> None:
        super().prepare(examples, tokenizer, model)
        if self.main_stage:
            return
        self.second.requires_grad_(True)  # loaded frozen; the generator learns in stage 3
        first: dict[str, Example] = {}
        for ex in examples:
            first.setdefault(ex.rationale.strip(), ex)
        rationales = sorted(first)
        self.target_index = {text: i for i, text in enumerate(rationales)}
        shorts = [condensed(first[r]) for r in rationales]
        short_ids = {text: i for i, text in enumerate(sorted(set(shorts)))}
        n_layers = model.config.num_hidden_layers
        start = n_layers // 2 if self.judge_start is None else int(self.judge_start)
        if not 0 <= start < n_layers:
            raise UserError(f"semcot: judge_start must be between 0 and {n_layers - 1} (the main model's layers)")
        self.judge = Judge(model, start, self.judge_layers)

        def encode(texts: list[str]):
            return main_states(model, tokenizer, texts, start)

        keys = torch.tensor([short_ids[s] for s in shorts])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.judge_info = train_judge(self.judge, rationales, shorts, keys, encode, steps=int(self.judge_steps),
                                          lr=float(self.judge_lr), batch_size=self.judge_batch_size,
                                          temperature=self.temperature)
        with torch.no_grad():
            self.rationale_targets = torch.cat([self.judge(*encode(rationales[i:i + 64])) for i in range(0, len(rationales), 64)])
            distinct = sorted(short_ids, key=short_ids.get)
            condensed_emb = torch.cat([self.judge(*encode(distinct[i:i + 64])) for i in range(0, len(distinct), 64)])
            own = (self.rationale_targets @ condensed_emb.T).argmax(1).cpu() == keys
        self.judge_info.update(judge_start=start, judge_layers=len(self.judge.upper.layers),
                               judge_pair_accuracy=round(float(own.float().mean()), 4))
        self.frozen_params += count_params(self.judge)

    # ----- stages 2 and 3: bridge, then generator --------------------------------------------------
    def second_learns(self) -> bool:
        return self.generator_stage

    def on_step(self, step: int, max_steps: int) -> None:
        """The generator joins once the bridge-only share of the steps is done."""
        self.generator_stage = step >= math.ceil(self.bridge_fraction * max_steps)

    def state_dict(self) -> dict:
        """The stage travels with a checkpoint, so a resumed run continues in the stage it left."""
        return {"generator_stage": self.generator_stage}

    def load_state_dict(self, state: dict) -> None:
        self.generator_stage = bool(state.get("generator_stage", self.generator_stage))

    def modules(self) -> dict[str, nn.Module]:
        mods = dict(super().modules())
        if self.second is not None:
            mods["generator"] = self.second
        return mods

    def run_info(self) -> dict:
        return {**super().run_info(), **self.judge_info}

    def features(self, example: Example, tokenizer) -> list[Feature]:
        features = super().features(example, tokenizer)
        if not self.main_stage:
            features[0].extras["target_index"] = self.target_index[example.rationale.strip()]
        return features

    def alignment_loss(self, vectors: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(align per sequence, cosine per sequence): the judge's reading of the implicit vectors
        against the cached judge embedding of each example's rationale."""
        if next(self.judge.parameters()).device != vectors.device:
            self.judge.to(vectors.device)  # a frozen training device: the trainer does not move it
        mask = torch.ones(vectors.shape[:2], dtype=torch.long, device=vectors.device)
        implicit = self.judge(vectors, mask)
        targets = self.rationale_targets.to(implicit.device)[index]
        cosine = (implicit * targets).sum(-1)
        if self.alignment == "infonce":
            return info_nce(implicit, targets, index, self.temperature, reduction="none"), cosine
        return 1 - cosine, cosine

    def targets(self, batch):
        """``α·align + (1 − α)·CE(answer)``: the answer's tokens, and the alignment per sequence."""
        answer = {"answer": token_weights(batch, ANSWER)}
        if self.main_stage:
            return Targets(answer, {"answer": 1.0})
        return Targets(answer, {"answer": 1 - float(self.alpha)},
                       {"align": torch.ones(batch["input_ids"].size(0))}, {"align": float(self.alpha)})

    def loss(self, model, batch):
        if self.main_stage:
            return self.forward_hidden(model, batch)
        vectors = self.batch_thoughts(batch)
        out = self.forward_hidden(model, {**batch, "vectors": vectors})
        align, cosine = self.alignment_loss(vectors, batch["target_index"])
        out.sequences["align"] = align
        out.logs.update(cosine=cosine.detach().mean(), generator_stage=torch.tensor(float(self.generator_stage)))
        return out
