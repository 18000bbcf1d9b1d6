"""The Method interface every distillation recipe implements, and the pieces recipes share.

A method answers three questions (DESIGN.md §3):
- ``features``: how one example becomes training sequences (token ids, per-token span codes);
- ``targets`` + ``loss``: what the student minimises on a batch of those sequences: the tokens it
  trains with their weights (declared from the batch, so the trainer can normalise over the whole
  optimiser step and add token-level KD on exactly those tokens), and the student's forward
  (hidden states, any sequence-level term);
- ``answer``: how the trained student answers at inference (prompt and stop rule).
The trainer, the evaluator and the CLI only talk to this interface, so a new method is one file
plus a registry entry. Nothing here knows about KD: the trainer owns it.

Span codes tag every token of a training sequence: ``PROMPT`` tokens are read but not predicted,
``ANSWER`` and ``RATIONALE`` tokens are predicted, and a method weighs the spans as its recipe says.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import UserError
from ..layout import EOS, Layout, newline_token_ids
from ..loss import StudentOutput, Targets, lm_head
from ..options import MethodOptions, method_option_values
from ..tasks import Example, extract_answer
from .modules_file import save_method_modules

PROMPT, ANSWER, RATIONALE = 0, 1, 2


@dataclass
class Feature:
    """One training sequence: ids, a span code per token, optional per-token weights and extras."""

    input_ids: list[int]
    spans: list[int]
    weights: list[float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """What the student produced for one question, with its cost."""

    answer: str | None
    text: str
    rationale: str | None = None
    tokens_to_answer: int = 0
    tokens_total: int = 0
    seconds_to_answer: float = 0.0
    seconds_total: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)


def format_question(example: Example) -> str:
    """``Question: ...`` plus the choices of a multiple-choice example, one line."""
    text = f"Question: {example.question.strip()}"
    if example.choices:
        text += "\nChoices: " + " ".join(f"({k}) {v}" for k, v in example.choices.items())
    return text + "\n"


def encode_pieces(tokenizer, pieces: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
    """Plain-text :meth:`Layout.encode`: each (text, span) piece tokenised on its own, ``"<eos>"``
    the eos token. Methods with a chat-aware layout call ``self.encode`` instead."""
    return Layout().encode(tokenizer, pieces)


def span_mask(batch: dict[str, torch.Tensor], *codes: int) -> torch.Tensor:
    """``[B, T-1]`` float: 1 where position p predicts a token of one of ``codes`` (token p+1)."""
    spans = batch["spans"][:, 1:]
    mask = torch.zeros_like(spans, dtype=torch.float)
    for code in codes:
        mask = mask + (spans == code).float()
    return mask


def token_weights(batch: dict[str, torch.Tensor], *codes: int) -> torch.Tensor:
    """``span_mask`` times the batch's per-token ``weights`` where it has them."""
    mask = span_mask(batch, *codes)
    return mask * batch["weights"][:, 1:] if "weights" in batch else mask


class Method:
    """Base class: option checking, the training lifecycle hooks the trainer calls, saving/loading,
    and batched greedy answers with stop rules.

    Lifecycle (all called by the trainer): ``prepare`` once before training, ``targets`` and ``loss``
    per micro-batch, ``observe`` with the per-token losses, ``on_step`` after every optimiser step,
    ``finish`` after the loop (a stage of its own, e.g. adaptive's perception module);
    ``state_dict``/``load_state_dict`` carry schedule state through checkpoints.
    """

    name: ClassVar[str] = "base"
    answer_first: ClassVar[bool] = False   # stop decoding right after the answer (PT, PST)
    uses_rationale: ClassVar[bool] = True  # training needs teacher rationales
    chat_layout: ClassVar[bool] = True     # False: the method writes its own prompts (plain text only)
    # The method's options, one typed definition (``methods show NAME`` prints it): a method
    # declares ``class Options(Parent.Options)`` with a field per option; they become attributes.
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    # The token sequences this method trains on, by the name of the method that first built them
    # (pst reads post_thinking's): stored teacher logits are saved and looked up per layout. None
    # where the student does not read the batch's input_ids (soft thoughts): token KD cannot apply.
    # (Not ``layout``: that is the prompt rendering, plain text or chat turns, set per run.)
    token_layout: ClassVar[str | None] = None
    # True: the sequences one example makes share a batch (prefix's two tasks train in every step).
    batch_examples_together: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.options = method_option_values(type(self).Options, options, self.name)
        for key, value in self.options.items():
            setattr(self, key, value)
        self._rng = random.Random(0)
        self.layout = Layout()  # plain text until the trainer or a run folder says otherwise

    # ----- layout -----------------------------------------------------------------------------
    def use_layout(self, layout: Layout) -> None:
        """Render prompts and targets with ``layout`` (plain text or the student's chat turns)."""
        self.layout = layout

    def encode(self, tokenizer, pieces: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
        """``pieces`` (the prompt first, then the target) as ids and span codes, in this layout."""
        return self.layout.encode(tokenizer, pieces)

    # ----- training ---------------------------------------------------------------------------
    def prepare(self, examples: list[Example], tokenizer, model) -> None:
        """One-off setup before training (caches, extra modules). Default: nothing."""

    def modules(self) -> dict[str, nn.Module]:
        """Extra trainable modules beside the student (saved with the run). Default: none."""
        return {}

    def features(self, example: Example, tokenizer) -> list[Feature]:
        raise NotImplementedError

    def targets(self, batch: dict[str, torch.Tensor]) -> Targets:
        """What this batch trains, from the batch alone (see ``loss.targets``). Default: one
        next-token loss over every answer and rationale token (with the features' weights)."""
        return Targets({"target": token_weights(batch, ANSWER, RATIONALE)}, {"target": 1.0})

    def loss(self, model, batch: dict[str, torch.Tensor]) -> StudentOutput:
        """The student's forward on a batch: hidden states for the token losses the trainer computes
        on ``targets``, plus any sequence-level losses. Default: the plain forward."""
        return self.forward_hidden(model, batch)

    def observe(self, batch: dict[str, torch.Tensor], ce: torch.Tensor) -> dict[str, torch.Tensor]:
        """The detached per-token cross-entropy ``[B, T-1]`` (0 where not computed) after each
        forward; returns values to log. Default: nothing."""
        return {}

    def on_step(self, step: int, max_steps: int) -> None:
        """Called after every optimizer step (schedules such as KPOD's progressive k). Default: nothing."""

    def finish(self, model, tokenizer, examples: list[Example]) -> None:
        """A stage after the main training loop (e.g. adaptive's perception module). Default: nothing."""

    def state_dict(self) -> dict[str, Any]:
        """Training-time state a checkpoint must carry for ``--resume`` to continue exactly (a
        schedule's progress). Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of ``state_dict``, called on resume after ``prepare``."""

    def run_info(self) -> dict:
        """Facts about the trained run for its record and metrics (e.g. trainable/frozen parameter
        counts of methods that freeze models). Default: none."""
        return {}

    # ----- saving and loading -----------------------------------------------------------------
    def save(self, out_dir, model, tokenizer) -> None:
        """Write what inference needs into ``out_dir``. Default: the student in Hugging Face format
        (plain ``AutoModelForCausalLM.from_pretrained`` loads it) plus the method's extra modules."""
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        save_method_modules(self, out_dir)

    def load(self, out_dir, device) -> tuple[Any, Any]:
        """Inverse of ``save``: ``(model, tokenizer)`` ready for ``answer``. Methods whose modules are
        needed at inference rebuild them here and call ``load_method_modules``."""
        from transformers import AutoModelForCausalLM

        from ..models import load_tokenizer
        tokenizer = load_tokenizer(str(out_dir))
        model = AutoModelForCausalLM.from_pretrained(str(out_dir)).to(device)
        model.eval()
        return model, tokenizer

    def forward_inputs(self, model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Model inputs for a training batch. With ``mask_rationale`` (Masked Thought) a random
        fraction of rationale *input* tokens is replaced by the pad token; targets stay intact. The
        draw uses the batch's own generator seed (set by the trainer), so a resumed run masks the
        same tokens as an uninterrupted one."""
        ids = batch["input_ids"]
        if self.mask_rationale > 0 and model.training:
            pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
            generator = None
            if "seed" in batch:
                generator = torch.Generator(device=ids.device).manual_seed(int(batch["seed"]))
            noise = torch.rand(ids.shape, device=ids.device, generator=generator)
            drop = (batch["spans"] == RATIONALE) & (noise < self.mask_rationale)
            ids = ids.masked_fill(drop, pad)
        return {"input_ids": ids, "attention_mask": batch["attention_mask"]}

    def forward_hidden(self, model, batch: dict[str, torch.Tensor]) -> StudentOutput:
        """The student's body on ``forward_inputs``: last hidden states and the head that reads them."""
        head = lm_head(model)
        return StudentOutput(head.body(**self.forward_inputs(model, batch)), head)

    # ----- inference --------------------------------------------------------------------------
    def prompt(self, example: Example) -> str:
        raise NotImplementedError

    def parse(self, text: str, example: Example) -> tuple[str | None, str | None]:
        """(answer, rationale) from the generated text. Default: the whole text is the answer."""
        return extract_answer(text, example.answer_type, example.choices), None

    def answer(self, model, tokenizer, examples: list[Example], *, batch_size: int = 32,
               max_new_tokens: int = 128, explain: bool = True) -> list[Prediction]:
        """Greedy answers. Answer-first methods stop at the end of the answer line; with ``explain``
        they then continue to the rationale, timed separately (time to the end)."""
        prompts = [self.prompt(ex) for ex in examples]
        ends = self.layout.end_ids(tokenizer)
        if self.answer_first:
            line_ids, line_strings = self.layout.answer_stops(tokenizer)
            first = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             stop_ids=line_ids, stop_strings=line_strings, end_ids=ends)
            rest = None
            if explain:
                rest = generate(model, tokenizer, [p + t for p, (t, _, _) in zip(prompts, first)],
                                max_new_tokens=max_new_tokens, batch_size=batch_size, end_ids=ends)
            preds = []
            for i, ex in enumerate(examples):
                text, n, secs = first[i]
                line = text
                for marker in line_strings:  # the fallback stop: the answer ends where the marker starts
                    line = line.split(marker, 1)[0]
                answer = extract_answer(line.strip(), ex.answer_type, ex.choices)
                more_text, more_n, more_secs = rest[i] if rest else ("", 0, 0.0)
                rationale = self.layout.rationale_text(more_text)
                preds.append(Prediction(answer, text + more_text, rationale or None, n, n + more_n, secs, secs + more_secs))
            return preds
        out = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, end_ids=ends)
        preds = []
        for ex, (text, n, secs) in zip(examples, out):
            answer, rationale = self.parse(text, ex)
            preds.append(Prediction(answer, text, rationale, n, n, secs, secs))
        return preds


class _StopOnText:
    """Stopping criterion for a tokenizer that cannot write the stop token itself: a row is done
    once its decoded new text contains one of ``strings``."""

    def __init__(self, tokenizer, strings: list[str], start: int) -> None:
        self.tokenizer, self.strings, self.start = tokenizer, strings, start

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start:], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.strings) for t in texts], device=input_ids.device)


def _stop_at_text(tokenizer, seq: list[int], strings: list[str]) -> int | None:
    """New tokens up to and including the one that completes a stop string (None: not reached)."""
    for j in range(1, len(seq) + 1):
        if any(s in tokenizer.decode(seq[:j], skip_special_tokens=True) for s in strings):
            return j
    return None


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, batch_size: int = 32,
             stop_ids: list[int] | None = None, stop_strings: list[str] | None = None,
             end_ids: list[int] | None = None) -> list[tuple[str, int, float]]:
    """Batched greedy decoding with the KV cache. Returns per prompt (text, new tokens up to and
    including the stop token, seconds): the seconds are the batch's wall time divided evenly.
    ``end_ids`` (eos, a chat template's end of turn) stop and are left out of the text; ``stop_ids``
    stop and stay; ``stop_strings`` stop once the decoded text contains them."""
    from transformers import StoppingCriteriaList
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ends = set([tokenizer.eos_token_id, *(end_ids or [])])
    eos = list(dict.fromkeys([tokenizer.eos_token_id, *(end_ids or []), *(stop_ids or [])]))
    eos_set = set(eos)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: list[tuple[str, int, float]] = [("", 0, 0.0)] * len(prompts)
    # Sort by prompt length so each batch pads little; results go back in the caller's order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: enc[k].to(device) for k in ("input_ids", "attention_mask")}  # never token_type_ids
        width = enc["input_ids"].shape[1]
        criteria = StoppingCriteriaList([_StopOnText(tokenizer, stop_strings, width)]) if stop_strings else None
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                             pad_token_id=pad, use_cache=True, stopping_criteria=criteria)
        if device.type == "cuda":
            torch.cuda.synchronize()
        secs = (time.perf_counter() - t0) / len(idx)
        new = out[:, width:].tolist()
        for i, seq in zip(idx, new):
            n = len(seq)
            for j, t in enumerate(seq):
                if t in eos_set:
                    n = j + 1
                    break
            if stop_strings:
                n = min(n, _stop_at_text(tokenizer, seq[:n], stop_strings) or n)
            keep = [t for t in seq[:n] if t not in ends]
            results[i] = (tokenizer.decode(keep, skip_special_tokens=True), n, secs)
    model.train(was_training)
    return results
