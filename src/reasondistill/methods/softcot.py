"""softcot (soft chain of thought): a frozen assistant's hidden states as hints for a frozen main model.

Recipe (METHODS.md). A small frozen *assistant* LM reads an instruction, the question and N
placeholder tokens in one forward pass (no decoding); its last-layer hidden states at the
placeholders are the *soft thoughts*. A trainable projection (``Linear(d_assistant, d_main)`` as in
the original, or a Linear–GELU–Linear with ``projection=mlp``) maps them into the frozen *main*
model's input-embedding space, where they overwrite N placeholder embeddings on a hints line after
the question (``Hints (they may be wrong): [....]``). The main model then writes its rationale and
the answer as in pre_thinking. Only the projection trains, with ``CE(rationale ⊕ answer)`` on the
main model's target (prompt masked). N is 32 in training and 4 at inference by default, as in the
original (options ``n_train``, ``n_infer``).

Why: nothing in the main model changes, so it forgets nothing, and a few thousand parameters learn
to hand it a compressed reading of the question by a second model.

The main model is ``--student`` (a trained run folder or a hub id), the assistant ``--assistant``.
A run folder holds only the projection and ``frozen_models.json``, the references ``load`` follows
to rebuild the frozen models; the run record counts trainable and frozen parameters.

A hub instruction model copes with a hints line it was never trained on; a tiny model trained on
one prompt layout does not (frozen, it loses track of the question: 0.29 on coin flips against its
own 0.99). So a tiny main model is trained first with ``stage=main``: the whole student learns the
method's own prompt with the thought slots left as placeholder tokens (both slot counts, training's
and inference's), and no assistant. That run is also the "empty thoughts" baseline: whatever softcot
scores above it is what the soft thoughts carry. The hints line goes after the question, as in the
original; ``hints_at=before_question`` puts it first, for 2-layer models whose copying of names from
the question breaks across 32 placeholder tokens (coin flips, mini main model: 0.43 after, 0.72 before).

``SoftThoughtMethod`` below is the machinery softcot and semcot share: a second model's last-layer
states at placeholder tokens, bridged into a frozen main model's input embeddings, and greedy
decoding from those embeddings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ..errors import UserError
from ..generation import left_pad
from ..io import atomic_write_json, read_json
from ..options import opt
from ..runfolder import RUN_FILE
from ..tasks import Example
from .base import (
    ANSWER,
    PROMPT,
    RATIONALE,
    Feature,
    Method,
    Row,
    encode_pieces,
    format_question,
)
from .pre_thinking import ANSWER_MARKER, PreThinking

INSTRUCTION = "Write informative hints that help another model solve this problem.\n"
HINTS_OPEN = "Hints (they may be wrong): ["
HINTS_CLOSE = "]\n"
REFS_FILE = "frozen_models.json"


def count_params(*modules: nn.Module | None) -> int:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


def model_ref(model: nn.Module) -> str:
    """Where a loaded model came from, in a form ``load_lm`` can follow later: an absolute path for a
    local folder, else the hub id. Empty for a model built in memory (there is nothing to refer to)."""
    ref = str(getattr(model, "name_or_path", "") or "")
    return str(Path(ref).resolve()) if ref and Path(ref).exists() else ref


def load_lm(ref: str, what: str) -> tuple[nn.Module, Any]:
    """(causal LM, tokenizer) of a *trained* model, a run folder or a hub id, frozen and in eval mode."""
    from ..models import is_tiny, load_frozen
    if is_tiny(ref) or not (Path(ref).exists() or ref.count("/") == 1):
        raise UserError(f"{what} '{ref}' must be a trained model: a run folder or a hub id like 'Qwen/Qwen2.5-0.5B'")
    return load_frozen(ref, what)


def placeholder_id(tokenizer) -> int:
    """The token a second model reads at each thought position. Its embedding only matters to that
    model (the main model's copies are overwritten); bos is rarely seen mid-text, so it marks them well."""
    for tid in (tokenizer.bos_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return tid
    raise UserError("the tokenizer has no bos, unk or eos token to use as a thought placeholder")


def placeholder_states(model: nn.Module, tokenizer, texts: list[str], n: int) -> torch.Tensor:
    """Last-layer hidden states (batch, n, d) at ``n`` placeholder tokens appended to each text, in one
    forward pass of the base model (no LM head, no decoding). Positions count real tokens only, so a
    text's states do not depend on what it is batched with."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [tokenizer(t, add_special_tokens=False).input_ids + [placeholder_id(tokenizer)] * n for t in texts]
    ids, mask = left_pad(rows, pad)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return model(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state[:, -n:]


def splice(embeds: torch.Tensor, starts: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``embeds`` with, in row b, the slots ``starts[b] .. starts[b]+n-1`` replaced by ``vectors[b]``."""
    cols = starts.to(embeds.device)[:, None] + torch.arange(vectors.size(1), device=embeds.device)
    rows = torch.arange(embeds.size(0), device=embeds.device)[:, None].expand_as(cols)
    return embeds.index_put((rows, cols), vectors.to(embeds.dtype))


def make_bridge(d_in: int, d_out: int, kind: str, scale: float) -> nn.Module:
    """Linear (the original) or Linear–GELU–Linear into the main model's embedding space. The last
    layer starts small, so the first soft thoughts have about the size of the main model's token
    embeddings (``scale``) instead of swamping its prompt."""
    last = nn.Linear(d_in if kind == "linear" else d_out, d_out)
    nn.init.normal_(last.weight, std=scale / last.in_features ** 0.5)
    nn.init.zeros_(last.bias)
    return last if kind == "linear" else nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), last)


class SoftThoughtMethod(Method):
    """A frozen main model that reads, in N slots of its prompt, vectors made by a second model.

    A recipe says what the second model reads (``second_text``), the main prompt around the slots
    (``main_parts``), the main model's target (``target_pieces``), how many slots (``n_slots``) and
    whether it answers first; this class loads the models, bridges them, trains, decodes, saves and loads.
    """

    second_role: ClassVar[str] = "assistant"  # the second model's name in messages and references
    token_layout = None  # the main model reads spliced embeddings, not input_ids: token KD does not apply
    chat_layout = False  # the main prompt has thought slots inside it: plain text only
    trains_second: ClassVar[bool] = False     # semcot's generator trains; softcot's assistant does not
    layout_options: ClassVar[tuple[str, ...]] = ()  # options that shape the main prompt (checked across stages)
    class Options(Method.Options):
        assistant: str | None = opt(None, "the second model (run folder or HF id); --assistant")
        projection: Literal["linear", "mlp"] = opt("linear", "the bridge into the main model: Linear, or "
                                                   "Linear-GELU-Linear")
        stage: Literal["bridge", "main"] = opt("bridge", "bridge: the method; main: first train a tiny main model "
                                               "on the method's prompt (no second model)")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.projection not in ("linear", "mlp"):
            raise UserError(f"{self.name}: projection must be 'linear' or 'mlp', not '{self.projection}'")
        if self.stage not in ("bridge", "main"):
            raise UserError(f"{self.name}: stage must be 'bridge' (the method) or 'main' (train a main model "
                            f"on its prompt first), not '{self.stage}'")
        if self.stage == "main" and self.assistant:
            raise UserError(f"{self.name}: stage=main trains the main model alone; drop the {self.second_role}")
        self.second: nn.Module | None = None  # the second model's base (no LM head: only states are used)
        self.second_tokenizer = None
        self.bridge: nn.Module | None = None
        self.refs: dict[str, str] = {}
        self.texts: list[str] = []
        self.index: dict[str, int] = {}
        self.frozen_params = 0

    # ----- what a recipe fills in -------------------------------------------------------------
    def n_slots(self, training: bool) -> int:
        raise NotImplementedError

    def second_text(self, example: Example) -> str:
        raise NotImplementedError

    def main_parts(self, example: Example) -> tuple[str, str]:
        raise NotImplementedError

    def target_pieces(self, example: Example) -> list[tuple[str, int]]:
        raise NotImplementedError

    # ----- models -------------------------------------------------------------------------------
    def attach(self, main: nn.Module, main_ref: str, second_ref: str) -> None:
        """Load the second model and build the bridge (for training from ``prepare``, at inference
        from ``load``)."""
        lm, self.second_tokenizer = load_lm(second_ref, f"{self.name} {self.second_role}")
        self.second = lm.base_model
        self.refs = {"main": main_ref, self.second_role: model_ref(lm) or second_ref}
        main_embeddings = main.get_input_embeddings()
        self.bridge = make_bridge(lm.get_input_embeddings().embedding_dim, main_embeddings.embedding_dim,
                                  self.projection, main_embeddings.weight.float().std().item())

    @property
    def main_stage(self) -> bool:
        """Training the main model itself, thought slots left as placeholders (no second model)."""
        return self.stage == "main"

    def prepare(self, examples: list[Example], tokenizer, model) -> None:
        if self.main_stage:
            return
        if hasattr(model, "peft_config"):
            raise UserError(f"{self.name} keeps the main model frozen: drop --lora-r")
        main_ref = model_ref(model)
        if not main_ref:
            raise UserError(f"{self.name} freezes the main model, so --student must be a trained model "
                            "(a run folder or a hub id), not a fresh tiny one")
        if not self.assistant:
            raise UserError(f"{self.name} needs --assistant: the {self.second_role} model (a run folder or a hub id)")
        self.check_main_stage(main_ref)
        model.requires_grad_(False)
        self.attach(model, main_ref, str(self.assistant))
        self.texts = sorted({self.second_text(ex) for ex in examples})
        self.index = {text: i for i, text in enumerate(self.texts)}
        self.frozen_params = count_params(model) + (0 if self.trains_second else count_params(self.second))

    def check_main_stage(self, main_ref: str) -> None:
        """A main model trained by this method's ``stage=main`` learnt one prompt layout; a bridge
        trained on another would read slots where the model never saw them."""
        record_path = Path(main_ref) / RUN_FILE
        if not record_path.is_file():
            return
        record = read_json(record_path)
        options = record.get("method_options", {})
        if record.get("method") != self.name or options.get("stage") != "main":
            return
        differ = [f"{k}={options.get(k)!r} there, {self.options[k]!r} here" for k in self.layout_options
                  if k in options and options[k] != self.options[k]]
        if differ:
            raise UserError(f"{self.name}: the main model was trained on another prompt layout ({'; '.join(differ)}); "
                            "use the same options in both stages")

    def modules(self) -> dict[str, nn.Module]:
        return {"bridge": self.bridge} if self.bridge is not None else {}

    def run_info(self) -> dict:
        """Everything saved was trained (some of it in a stage of its own); the rest is referenced."""
        if self.main_stage:
            return {}
        return {"trainable_params": count_params(*self.modules().values()), "frozen_params": self.frozen_params,
                "references": dict(self.refs)}

    # ----- training -----------------------------------------------------------------------------
    def prompt_ids(self, example: Example, tokenizer, n: int) -> tuple[list[int], int]:
        """The main model's prompt as ids with ``n`` slot placeholders between its two parts, and
        where the slots start. The parts are tokenised on their own, in training and at inference."""
        head, tail = self.main_parts(example)
        head_ids = tokenizer(head, add_special_tokens=False).input_ids
        tail_ids = tokenizer(tail, add_special_tokens=False).input_ids
        return head_ids + [placeholder_id(tokenizer)] * n + tail_ids, len(head_ids)

    def features(self, example: Example, tokenizer) -> list[Feature]:
        target, spans = encode_pieces(tokenizer, self.target_pieces(example))
        if self.main_stage:  # the main model learns the prompt with as many slots as it will be given
            counts = dict.fromkeys((self.n_slots(training=True), self.n_slots(training=False)))
            return [Feature(ids + target, [PROMPT] * len(ids) + spans)
                    for ids, _ in (self.prompt_ids(example, tokenizer, n) for n in counts)]
        ids, start = self.prompt_ids(example, tokenizer, self.n_slots(training=True))
        return [Feature(ids + target, [PROMPT] * len(ids) + spans,
                        extras={"slot_start": start, "text_index": self.index[self.second_text(example)]})]

    def thoughts(self, texts: list[str], n: int) -> torch.Tensor:
        """(batch, n, d_main): the second model's states at ``n`` placeholders after each text, bridged."""
        weight = next(self.bridge.parameters())
        if next(self.second.parameters()).device != weight.device:
            self.second.to(weight.device)  # a frozen assistant is not a trained module: the trainer leaves it
        with torch.set_grad_enabled(self.second_learns() and torch.is_grad_enabled()):
            states = placeholder_states(self.second, self.second_tokenizer, texts, n)
        return self.bridge(states.to(weight.dtype))

    def second_learns(self) -> bool:
        """Whether the second model's states carry gradients now (semcot's generator, after its
        bridge-only stage); softcot's assistant never learns."""
        return self.trains_second

    def batch_thoughts(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.thoughts([self.texts[i] for i in batch["text_index"].tolist()], self.n_slots(training=True))

    def forward_inputs(self, model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The main model's inputs: its token embeddings with the thought slots overwritten. A batch
        may carry its ``vectors`` already (semcot needs them for its alignment loss too)."""
        if self.main_stage:
            return super().forward_inputs(model, batch)
        ids = super().forward_inputs(model, batch)["input_ids"]  # Masked Thought, when asked, still applies
        vectors = batch["vectors"] if "vectors" in batch else self.batch_thoughts(batch)
        embeds = splice(model.get_input_embeddings()(ids), batch["slot_start"], vectors)
        return {"inputs_embeds": embeds, "attention_mask": batch["attention_mask"]}

    # ----- inference ----------------------------------------------------------------------------
    @torch.no_grad()
    def rows(self, model, tokenizer, examples: list[Example], *, max_new_tokens: int, explain: bool = True,
             think_budget: int | None = None, batch_size: int = 32) -> list[Row]:
        """Rows whose prompt embeddings carry the soft thoughts. A question's time starts with its
        share of the second model's pass and the bridge, so time to answer includes them."""
        self.check_budget(think_budget)
        if self.second is not None:
            self.second.eval()
        rules = self.row_rules(tokenizer, explain=explain, think_budget=think_budget)
        n = self.n_slots(training=False)
        embed = model.get_input_embeddings()
        device = embed.weight.device
        rows: list[Row] = []
        for first in range(0, len(examples), max(1, batch_size)):
            chunk = examples[first:first + batch_size]
            started = time.perf_counter()
            prompts = [self.prompt_ids(ex, tokenizer, n) for ex in chunk]
            embeds = [embed(torch.tensor(ids, device=device)) for ids, _ in prompts]
            if not self.main_stage:  # (the main stage's slots keep their placeholder embeddings)
                vectors = self.thoughts([self.second_text(ex) for ex in chunk], n)
                embeds = [e.index_copy(0, torch.arange(start, start + n, device=device), v.to(e.dtype))
                          for e, (_, start), v in zip(embeds, prompts, vectors)]
            if device.type == "cuda":
                torch.cuda.synchronize()
            share = (time.perf_counter() - started) / len(chunk)
            for (ids, _), e in zip(prompts, embeds):
                rows.append(Row(ids, max_new_tokens, prompt_embeds=e, seconds=share, **rules))
        return rows

    # ----- saving and loading -------------------------------------------------------------------
    def save(self, out_dir, model, tokenizer) -> None:
        """Only what trained, plus references to the frozen models (never a copy of them)."""
        if self.main_stage:
            return super().save(out_dir, model, tokenizer)
        from .modules_file import save_method_modules
        save_method_modules(self, Path(out_dir))
        atomic_write_json(Path(out_dir) / REFS_FILE, self.refs)

    def load(self, out_dir, device) -> tuple[Any, Any]:
        if self.main_stage:
            return super().load(out_dir, device)
        from .modules_file import load_method_modules
        path = Path(out_dir) / REFS_FILE
        if not path.exists():
            raise UserError(f"no {REFS_FILE}: not a {self.name} run folder", path=str(out_dir))
        refs = read_json(path)
        model, tokenizer = load_lm(refs["main"], f"{self.name} main model")
        self.attach(model, refs["main"], refs[self.second_role])
        self.refs = refs
        load_method_modules(self, Path(out_dir))
        for module in (model, self.second, *self.modules().values()):
            module.to(device).eval()
        return model, tokenizer


class SoftCoT(SoftThoughtMethod):
    name = "softcot"
    answer_marker = ANSWER_MARKER  # pre_thinking's target: a thinking budget forces the marker
    layout_options = ("hints_at", "n_train", "n_infer")
    class Options(SoftThoughtMethod.Options):
        n_train: int = opt(32, "soft thoughts in training", ge=1)
        n_infer: int = opt(4, "soft thoughts at inference", ge=1)
        instruction: str = opt(INSTRUCTION, "the assistant's instruction before the question")
        hints_at: Literal["after_question", "before_question"] = opt("after_question", "where the hints line goes "
                                                                     "in the main model's prompt")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for key in ("n_train", "n_infer"):
            if not isinstance(self.options[key], int) or self.options[key] < 1:
                raise UserError(f"softcot: {key} must be a positive whole number, not {self.options[key]!r}")
        if self.hints_at not in ("after_question", "before_question"):
            raise UserError(f"softcot: hints_at must be 'after_question' or 'before_question', not '{self.hints_at}'")

    def n_slots(self, training: bool) -> int:
        return self.n_train if training else self.n_infer

    def second_text(self, example: Example) -> str:
        return self.instruction + format_question(example)

    def main_parts(self, example: Example) -> tuple[str, str]:
        if self.hints_at == "before_question":
            return HINTS_OPEN, HINTS_CLOSE + format_question(example) + "Rationale:"
        return format_question(example) + HINTS_OPEN, HINTS_CLOSE + "Rationale:"

    def target_pieces(self, example: Example) -> list[tuple[str, int]]:
        return [(f" {example.rationale.strip()}", RATIONALE), (ANSWER_MARKER, ANSWER),
                (f" {example.answer}", ANSWER), ("<eos>", ANSWER)]

    # loss: the default, one next-token loss over rationale and answer (pre_thinking's)
    parse = PreThinking.parse  # the answer follows the rationale's answer line
