"""adaptive (adaptive thinking, PST's later version): answer first on easy questions, think first on hard.

One student learns both formats of every example, which share the prefix ``Question: x``:

    answer-first (PT):   Question: x / Answer: y / Rationale: r <eos>   (rationale weighted rationale_weight)
    think-first (pre):   Question: x / Rationale: r / Answer: y <eos>

After the main training loop (``finish``) a perception module learns which mode to use. The
trained student answers some questions both ways; a question is labelled think-first when only
thinking first gets it right (answer-first wins ties, both right or both wrong, since it is many
times cheaper). A small classifier on the student's mean-pooled hidden state of the question then
learns those labels. The labelled questions are a ``holdout`` share of the training examples that
the student never trains on, so the labels say how it does on questions it has not memorised (with
``holdout=0`` the training questions are labelled instead).

At inference the classifier routes each question (its forward pass counts in the time to answer),
then the chosen mode answers with its own prompt and stop rule: answer-first stops at the end of
the answer line, think-first writes the rationale first. Every prediction carries
``extras["mode"]``; evaluation reports ``answer_first_fraction`` and ``think_first_fraction``.
Option ``mode`` forces one mode ("answer_first" or "think_first") for ablations; "auto" (the
default) lets the perception module choose.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..io import atomic_write_json
from ..options import opt
from ..tasks import Example, is_correct
from .base import ANSWER, RATIONALE, Feature, Method, Prediction, Row, format_question
from .post_thinking import PostThinking
from .pre_thinking import PreThinking
from .pst import student_embeddings

MODES = ("auto", "answer_first", "think_first")
STATS_FILE = "adaptive_perception.json"


class Perception(nn.Module):
    """Logit of "think first" from a question's pooled hidden state (standardised, then a small MLP)."""

    def __init__(self, d_model: int, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(d_model))
        self.register_buffer("std", torch.ones(d_model))
        self.net = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net((h.float() - self.mean) / self.std).squeeze(-1)


def fit_perception(vectors: torch.Tensor, think: torch.Tensor, *, steps: int = 300, lr: float = 1e-2,
                   seed: int = 0) -> tuple[Perception, float]:
    """Fit a Perception to labels (1 = think first) on question vectors; (module, training accuracy)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = Perception(vectors.size(1))
    module.mean.copy_(vectors.float().mean(0))
    module.std.copy_(vectors.float().std(0).nan_to_num(1.0).clamp(min=1e-4))
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-2)
    target = think.float()
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(module(vectors), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        accuracy = float(((module(vectors) > 0) == think.bool()).float().mean())
    return module, accuracy


class Adaptive(Method):
    name = "adaptive"
    token_layout = "adaptive"
    class Options(Method.Options):
        rationale_weight: float = opt(0.5, "answer-first sequences: weight of the rationale after the answer", ge=0)
        mode: Literal["auto", "answer_first", "think_first"] = opt("auto", "auto: the perception module picks "
                                                                   "per question; or force one mode (ablations)")
        holdout: float = opt(0.2, "share of training examples kept out of training to label the modes", ge=0, lt=1)
        perception_examples: int = opt(512, "most questions labelled for the perception module", ge=1)
        perception_steps: int = opt(300, "training steps of the perception classifier", ge=1)
        think_threshold: float = opt(0.5, "think first when the classifier's probability is above this", ge=0, le=1)
        holdout_seed: int = opt(0, "seed of the holdout draw")

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.mode not in MODES:
            raise UserError(f"adaptive: mode must be one of {', '.join(MODES)}, not '{self.mode}'")
        if not 0.0 <= self.holdout < 1.0:
            raise UserError(f"adaptive: holdout must be in [0, 1), not {self.holdout}")
        self.fast = PostThinking()   # answer-first format, prompt and stop rule
        self.slow = PreThinking()    # think-first format, prompt and answer parsing
        self.held_out: set[tuple] = set()
        self.perception: Perception | None = None
        self.stats: dict = {}

    def use_layout(self, layout) -> None:
        """Both modes write, and are asked, in the same layout."""
        super().use_layout(layout)
        self.fast.use_layout(layout)
        self.slow.use_layout(layout)

    # ----- training ---------------------------------------------------------------------------
    def prepare(self, examples: list[Example], tokenizer, model) -> None:
        """Choose the held-out questions that will label the perception module."""
        n_out = round(self.holdout * len(examples))
        if n_out < 2 or n_out > len(examples) - 2:
            n_out = 0  # too few examples to spare: label the training questions instead
        picked = random.Random(self.holdout_seed).sample(range(len(examples)), n_out)
        self.held_out = {_key(examples[i]) for i in picked}

    def features(self, example: Example, tokenizer) -> list[Feature]:
        if _key(example) in self.held_out:
            return []  # kept for labelling in finish()
        [fast] = self.fast.features(example, tokenizer)
        fast.weights = [self.rationale_weight if s == RATIONALE else 1.0 for s in fast.spans]
        [slow] = self.slow.features(example, tokenizer)
        slow.weights = [1.0] * len(slow.spans)
        fast.extras["think_first"], slow.extras["think_first"] = 0, 1
        return [fast, slow]

    # The loss is the default one weighted NTP loss over all targets (the features carry the weights).

    def observe(self, batch, ce):
        """How hard the answer is in each mode: the signal perception learns from."""
        out = {}
        spans = batch["spans"][:, 1:]
        for key, flag in (("ce_answer_first", 0), ("ce_think_first", 1)):
            mask = ((spans == ANSWER) & (batch["think_first"] == flag).unsqueeze(1)).float()
            if mask.sum() > 0:
                out[key] = (ce * mask).sum() / mask.sum()
        return out

    def finish(self, model, tokenizer, examples: list[Example]) -> None:
        """Label questions by which mode the trained student gets right; fit the perception module."""
        held = [ex for ex in examples if _key(ex) in self.held_out]
        labelled = (held or examples)[:int(self.perception_examples)]
        longest = max(len(tokenizer(f" {ex.rationale} \nAnswer: {ex.answer}", add_special_tokens=False).input_ids)
                      for ex in labelled)
        fast = self.fast.answer(model, tokenizer, labelled, max_new_tokens=32, explain=False)
        slow = self.slow.answer(model, tokenizer, labelled, max_new_tokens=int(longest * 1.25) + 8)
        fast_ok = torch.tensor([is_correct(p.answer, ex.answer, ex.answer_type) for p, ex in zip(fast, labelled)])
        slow_ok = torch.tensor([is_correct(p.answer, ex.answer, ex.answer_type) for p, ex in zip(slow, labelled)])
        think = slow_ok & ~fast_ok
        vectors = self.question_vectors(model, tokenizer, labelled).cpu()
        self.perception, fit_accuracy = fit_perception(vectors, think, steps=int(self.perception_steps))
        self.perception.to(next(model.parameters()).device)
        self.stats = {"labelled": len(labelled), "labelled_on": "held-out" if held else "training",
                      "answer_first_correct": round(float(fast_ok.float().mean()), 4),
                      "think_first_correct": round(float(slow_ok.float().mean()), 4),
                      "think_first_label_fraction": round(float(think.float().mean()), 4),
                      "perception_fit_accuracy": round(fit_accuracy, 4)}

    def modules(self) -> dict[str, nn.Module]:
        return {"perception": self.perception} if self.perception is not None else {}

    def run_info(self) -> dict:
        return {"perception": self.stats} if self.stats else {}

    # ----- saving and loading -----------------------------------------------------------------
    def save(self, out_dir, model, tokenizer) -> None:
        super().save(out_dir, model, tokenizer)
        if self.stats:
            atomic_write_json(Path(out_dir) / STATS_FILE, self.stats)

    def load(self, out_dir, device):
        from .modules_file import MODULES_FILE, load_method_modules
        model, tokenizer = super().load(out_dir, device)
        if (Path(out_dir) / MODULES_FILE).exists():
            self.perception = Perception(model.config.hidden_size).to(device)
            load_method_modules(self, out_dir)
            self.perception.eval()
        elif self.mode == "auto":
            raise UserError("adaptive run has no perception module (training did not finish?)", path=str(out_dir))
        return model, tokenizer

    # ----- inference --------------------------------------------------------------------------
    def question_vectors(self, model, tokenizer, examples: list[Example]) -> torch.Tensor:
        """The student's mean-pooled last hidden states over ``Question: x``, the shared prefix."""
        was_training = model.training
        model.eval()
        vectors = student_embeddings(model, tokenizer, [format_question(ex) for ex in examples])
        model.train(was_training)
        return vectors

    def route(self, model, tokenizer, examples: list[Example]) -> tuple[list[bool], float]:
        """Per question: think first? And the routing seconds per question."""
        if self.mode != "auto":
            return [self.mode == "think_first"] * len(examples), 0.0
        if self.perception is None:
            raise UserError("adaptive: no perception module; train the run to the end, or set mode")
        started = time.perf_counter()
        vectors = self.question_vectors(model, tokenizer, examples)
        device = self.perception.mean.device
        with torch.no_grad():
            think = (torch.sigmoid(self.perception(vectors.to(device))) > self.think_threshold).tolist()
        return think, (time.perf_counter() - started) / max(len(examples), 1)

    def thinks_first(self) -> bool:
        return self.mode != "answer_first"  # the think-first route takes a thinking budget

    def rows(self, model, tokenizer, examples: list[Example], *, max_new_tokens: int, explain: bool = True,
             think_budget: int | None = None, batch_size: int = 32) -> list[Row]:
        """Route each question, then its mode's rows (a budget applies to the think-first route). The
        routing pass counts in every question's time to answer."""
        self.check_budget(think_budget)
        think, route_secs = self.route(model, tokenizer, examples)
        rows = []
        for ex, flag in zip(examples, think):
            mode = self.slow if flag else self.fast
            [row] = mode.rows(model, tokenizer, [ex], max_new_tokens=max_new_tokens, explain=explain,
                              think_budget=think_budget if flag else None)
            row.seconds = route_secs
            row.meta["think_first"] = flag
            rows.append(row)
        return rows

    def predictions(self, rows: list[Row], examples: list[Example]) -> list[Prediction]:
        preds = []
        for row, ex in zip(rows, examples):
            flag = bool(row.meta.get("think_first"))
            [p] = (self.slow if flag else self.fast).predictions([row], [ex])
            p.extras.update(mode="think_first" if flag else "answer_first", answer_first=not flag, think_first=flag)
            preds.append(p)
        return preds


def _key(ex: Example) -> tuple:
    return (ex.id, ex.question, ex.answer)
