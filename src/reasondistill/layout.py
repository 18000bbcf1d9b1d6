"""How a method's sequence is written for one student: plain text, or the student's chat turns.

A method says only its pieces: the question block, a plain-text cue (``Answer:``), and its target
as (text, span) pieces. The :class:`Layout` turns them into tokens:

- **plain** (no chat template, or ``--chat-template none``): ``question + cue`` then the target,
  exactly today's text; a tokenizer that puts a BOS in front of text gets it here too (once).
- **chat**: the question is the user turn and the target the assistant turn. The prompt is exactly
  :func:`render_prompt`'s text, ``apply_chat_template(..., add_generation_prompt=True)``, which is
  also what inference and ``serve`` send, so training and inference see the same prefix token for
  token. The template's end-of-turn token (``<|im_end|>``, ``<end_of_turn>``, ...) ends the target
  where the template has one, otherwise the eos.
- **think tags**: a student whose template or vocabulary has ``<think>``/``</think>`` gets the
  rationale inside a think block; the method decides where the block goes.

The answer-first stop is the first newline token; a tokenizer that cannot encode a newline stops
at the think-open token or, failing that, at the rationale marker found in the decoded text, so the
early stop is never silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

EOS = "<eos>"  # a piece with this text stands for the end token (end of turn, or eos)
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
RATIONALE_MARKER = "Rationale:"
_SENTINEL = "\x00RD-ASSISTANT\x00"


def render_prompt(tokenizer, user: str) -> str:
    """The chat prompt for one user turn, ready for the assistant's reply: the text both training
    and every inference path (``answer``, ``serve``) tokenise."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                         tokenize=False)


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def newline_token_ids(tokenizer) -> list[int]:
    """Every token whose text contains a newline: the answer-end marker of answer-first methods."""
    cached = getattr(tokenizer, "_rd_newline_ids", None)
    if cached is None:
        vocab = tokenizer.get_vocab()
        cached = sorted(i for i in vocab.values() if "\n" in tokenizer.decode([i]))
        tokenizer._rd_newline_ids = cached
    return cached


def end_of_turn_id(tokenizer) -> int | None:
    """The token the template writes right after an assistant message (None when it writes none
    or only plain text there)."""
    try:
        full = tokenizer.apply_chat_template([{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": _SENTINEL}], tokenize=False)
    except Exception:  # templates that refuse an assistant turn on its own, or other roles
        return None
    tail = full.split(_SENTINEL, 1)[1] if _SENTINEL in full else ""
    ids = _encode(tokenizer, tail.lstrip(" ")) if tail.strip() else []
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return ids[0] if ids and ids[0] in special else None


def has_think_tags(tokenizer, template: str | None) -> bool:
    """The student already knows think blocks: its template writes them or its vocabulary has both tags."""
    if template and THINK_OPEN in template:
        return True
    vocab = tokenizer.get_vocab()
    return THINK_OPEN in vocab and THINK_CLOSE in vocab


@dataclass
class Layout:
    """Plain or chat rendering of (question, cue, target pieces) for one tokenizer."""

    tokenizer: Any = field(default=None, repr=False)
    chat: bool = False
    think: bool = False
    source: str = "none"  # what --chat-template said: auto, none or a file
    _cache: dict = field(default_factory=dict, repr=False)

    # ----- text ---------------------------------------------------------------------------------
    def prompt(self, user: str, cue: str) -> str:
        """What the student reads before its target, at training and at inference alike."""
        if self.chat:
            return render_prompt(self.tokenizer, user.strip())
        return self.bos_text() + user + cue

    def bos_text(self) -> str:
        """The BOS a tokenizer puts in front of text by default (LLaMA, Gemma), as text, so plain
        prompts carry it once although every piece is tokenised without special tokens."""
        tok = self.tokenizer
        if tok is None or tok.bos_token is None:
            return ""
        if "bos" not in self._cache:
            ids = tok("a").input_ids
            self._cache["bos"] = tok.bos_token if ids and ids[0] == tok.bos_token_id else ""
        return self._cache["bos"]

    def think_block(self, rationale: str) -> str:
        return f"{THINK_OPEN}\n{rationale.strip()}\n{THINK_CLOSE}"

    def rationale_text(self, text: str) -> str:
        """The rationale in generated text that follows the answer line: without its marker or tags."""
        text = text.strip()
        if THINK_OPEN in text or THINK_CLOSE in text:
            return text.replace(THINK_OPEN, "").split(THINK_CLOSE, 1)[0].strip()
        first = text.split("\n")[0]
        return text.split(":", 1)[1].strip() if ":" in first else text

    # ----- tokens -------------------------------------------------------------------------------
    def end_id(self, tokenizer=None) -> int:
        """The token that ends a target: the template's end of turn in chat, else the eos."""
        tok = tokenizer or self.tokenizer
        if self.chat:
            key = ("eot", id(tok))
            if key not in self._cache:
                self._cache[key] = end_of_turn_id(tok)
            if self._cache[key] is not None:
                return self._cache[key]
        return tok.eos_token_id

    def end_ids(self, tokenizer=None) -> list[int]:
        """Every token that ends generation: the eos and, in chat, the end of turn."""
        tok = tokenizer or self.tokenizer
        if tok is None:
            return []
        return list(dict.fromkeys(i for i in (tok.eos_token_id, self.end_id(tok)) if i is not None))

    def encode(self, tokenizer, pieces: list[tuple[str, int]]) -> tuple[list[int], list[int]]:
        """Tokenise each (text, span) piece on its own so span boundaries are exact and the prompt's
        tokens match what the student sees at inference. In chat the assistant's reply starts
        without the space plain text puts after its cue; ``EOS`` becomes :meth:`end_id`."""
        ids: list[int] = []
        spans: list[int] = []
        end = None
        for n, (text, span) in enumerate(pieces):
            if text == EOS:
                end = self.end_id(tokenizer) if end is None else end
                piece = [end]
            else:
                piece = _encode(tokenizer, text.lstrip(" ") if self.chat and n == 1 else text)
            ids += piece
            spans += [span] * len(piece)
        return ids, spans

    def answer_stops(self, tokenizer) -> tuple[list[int], list[str]]:
        """Token ids and decoded-text strings that end the answer line of answer-first methods."""
        ids = list(newline_token_ids(tokenizer))
        if self.think:
            ids += [i for i in _encode(tokenizer, THINK_OPEN)[:1] if i not in ids]
        if ids and (self.think or _encode(tokenizer, "\n")):
            return ids, []
        # The marker's word as this tokenizer writes it back (BERT-style ones lower-case it); the
        # colon is left out so a student that has the word but not yet the colon still stops.
        word = RATIONALE_MARKER.rstrip(":")
        return ids, [tokenizer.decode(_encode(tokenizer, word)).strip() or word]

    def mark_ends(self, model) -> None:
        """Write every end token into the model's generation config, so ``generate`` and servers
        that read it (vLLM, SGLang, TGI) stop at the template's end of turn as well as at the eos."""
        config = getattr(model, "generation_config", None)
        if config is not None and self.tokenizer is not None and self.chat:
            ends = self.end_ids()
            config.eos_token_id = ends if len(ends) > 1 else ends[0]

    def describe(self) -> dict:
        """What the run record keeps, so loading a run renders exactly as training did."""
        return {"chat": self.chat, "think": self.think, "chat_template": self.source}


def resolve_layout(tokenizer, chat_template: str | None = "auto", *, supported: bool = True,
                   method: str = "") -> Layout:
    """The layout for a student: ``auto`` (its template when it has one), ``none`` (plain text), or
    a Jinja template file (stored in the tokenizer, so the saved run carries it)."""
    spec = "auto" if chat_template in (None, "") else str(chat_template)
    if spec not in ("auto", "none"):
        path = Path(spec)
        if not path.is_file():
            raise UserError("--chat-template must be auto, none or a Jinja template file", path=spec)
        if not supported:
            raise UserError(f"method '{method}' writes its own prompt layout; use --chat-template auto or none")
        tokenizer.chat_template = path.read_text()
    if not supported:
        return Layout(tokenizer, source=spec)
    template = getattr(tokenizer, "chat_template", None)
    chat = spec != "none" and bool(template)
    return Layout(tokenizer, chat=chat, think=has_think_tags(tokenizer, template if chat else None), source=spec)


def layout_from_record(tokenizer, info: dict | None) -> Layout:
    """The layout a run was trained with (runs recorded before layouts existed are plain)."""
    if not info:
        return Layout(tokenizer)
    if info.get("chat") and not getattr(tokenizer, "chat_template", None):
        raise UserError("this run was trained with a chat template its saved tokenizer no longer has")
    return Layout(tokenizer, chat=bool(info.get("chat")), think=bool(info.get("think")),
                  source=str(info.get("chat_template", "auto")))
