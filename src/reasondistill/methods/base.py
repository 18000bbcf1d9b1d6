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
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import UserError
from ..generation import Row, StopRule, decode, decoded_form
from ..layout import EOS, THINK_CLOSE, Layout, newline_token_ids  # noqa: F401 (re-exported)
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
    # True: the loss is per-token only and the forward reads just the batch's tokens, so several
    # sequences may be packed into one row (``training/packing.py``).
    packs: ClassVar[bool] = False

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
        if "position_ids" in batch:  # packed rows: the block-diagonal mask comes from the positions (packing.py)
            return {"input_ids": ids, "position_ids": batch["position_ids"], "use_cache": False}
        return {"input_ids": ids, "attention_mask": batch["attention_mask"]}

    def forward_hidden(self, model, batch: dict[str, torch.Tensor]) -> StudentOutput:
        """The student's body on ``forward_inputs``: last hidden states and the head that reads them."""
        head = lm_head(model)
        return StudentOutput(head.body(**self.forward_inputs(model, batch)), head)

    # ----- inference (generation.py decodes) ---------------------------------------------------
    answer_marker: ClassVar[str | None] = None  # think-first: the text that opens the answer line

    def prompt(self, example: Example) -> str:
        raise NotImplementedError

    def encode_prompt(self, example: Example, tokenizer) -> list[int]:
        """The prompt's token ids, tokenised as in training (no special tokens added)."""
        return tokenizer(self.prompt(example), add_special_tokens=False).input_ids

    def parse(self, text: str, example: Example) -> tuple[str | None, str | None]:
        """(answer, rationale) from the generated text. Default: the whole text is the answer."""
        return extract_answer(text, example.answer_type, example.choices), None

    def thinks_first(self) -> bool:
        """Whether the student writes a rationale before its answer (a thinking budget applies)."""
        return self.answer_marker is not None

    def row_rules(self, tokenizer, *, explain: bool = True, think_budget: int | None = None) -> dict[str, Any]:
        """The stop rules of this method's rows (``generation.Row`` fields), in its layout: every row
        ends at the layout's end tokens (eos, a chat template's end of turn); answer-first students end
        their answer at the end of its line; think-first ones after the answer marker (``Answer:``, or
        the closing think tag), which budget forcing writes after ``think_budget`` thinking tokens."""
        rules: dict[str, Any] = {"end_ids": frozenset(self.layout.end_ids(tokenizer))}
        if self.answer_first:
            ids, strings = self.layout.answer_stops(tokenizer)
            rules.update(answer_end=StopRule(frozenset(ids), ("\n", *strings)), explain=explain)
        elif self.answer_marker is not None:
            if self.layout.think:  # the answer follows the think block and ends with the turn
                marker, forced, end = THINK_CLOSE, f"\n{THINK_CLOSE}\n\n", StopRule()
            else:
                marker, forced = decoded_form(tokenizer, self.answer_marker).strip(), self.answer_marker
                end = StopRule(frozenset(newline_token_ids(tokenizer)), ("\n",))
            rules.update(answer_end=end, think_budget=think_budget, marker=marker,
                         marker_ids=tokenizer(forced, add_special_tokens=False).input_ids)
        return rules

    def check_budget(self, think_budget: int | None) -> None:
        if think_budget is not None and not self.thinks_first():
            raise UserError(f"a thinking budget applies to think-first methods (pre_thinking, kpod, adaptive, "
                            f"softcot), not {self.name}, which answers without thinking first")
        if think_budget is not None and (isinstance(think_budget, bool) or not isinstance(think_budget, int)
                                         or think_budget < 0):
            raise UserError(f"the thinking budget must be a whole number >= 0 (or none), not {think_budget!r}")

    def rows(self, model, tokenizer, examples: list[Example], *, max_new_tokens: int, explain: bool = True,
             think_budget: int | None = None, batch_size: int = 32) -> list[Row]:
        """What to decode for each question: its prompt and this method's stop rules. ``answer`` decodes
        these in one go; ``serve`` decodes them in its scheduler, interleaved with other requests."""
        self.check_budget(think_budget)
        rules = self.row_rules(tokenizer, explain=explain, think_budget=think_budget)
        return [Row(self.encode_prompt(ex, tokenizer), max_new_tokens, **rules) for ex in examples]

    def predictions(self, rows: list[Row], examples: list[Example]) -> list[Prediction]:
        """Decoded rows to predictions: the answer parsed by this method's rules, with its cost."""
        preds = []
        for row, ex in zip(rows, examples):
            text = row.text
            if self.answer_first:
                answer = extract_answer(row.answer_text.strip(), ex.answer_type, ex.choices)
                rationale = self.layout.rationale_text(row.rest_text)
            else:
                answer, rationale = self.parse(text, ex)
            preds.append(Prediction(answer, text, rationale or None, row.answer_tokens or 0, len(row.generated),
                                    row.seconds_to_answer, row.seconds,
                                    extras={"forced_answer": row.forced > 0} if row.think_budget is not None else {}))
        return preds

    def answer(self, model, tokenizer, examples: list[Example], *, batch_size: int = 32,
               max_new_tokens: int = 128, explain: bool = True, think_budget: int | None = None) -> list[Prediction]:
        """Greedy answers. Answer-first methods' answers end at the end of the answer line; with
        ``explain`` they go on to the rationale (time to answer and time to the end are both kept)."""
        rows = self.rows(model, tokenizer, examples, max_new_tokens=max_new_tokens, explain=explain,
                         think_budget=think_budget, batch_size=batch_size)
        decode(model, tokenizer, rows, batch_size=batch_size)
        return self.predictions(rows, examples)
