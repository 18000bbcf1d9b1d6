"""Reading a reasoning teacher's trace apart from its answer, and telling a cut-off response.

Reasoning servers return the thinking in one of three ways: a separate message field
(``reasoning_content`` from DeepSeek's API and vLLM's ``--reasoning-parser``; ``reasoning`` from
newer vLLM and OpenRouter), or inline as ``<think>...</think>`` before the answer (a server without
a reasoning parser, the completions endpoint, a local model). R1-style chat templates put the
opening ``<think>`` into the prompt, so the text may hold only the closing tag. Either way the trace
is what a student should learn from, and the rest is where the answer is read.

A response is truncated when the server says it stopped at the token limit, or when a think block
was opened and never closed (no answer can follow it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import Completion

REASONING = ("auto", "off")
_OPEN, _CLOSE = "<think>", "</think>"
_OPEN_RE = re.compile(r"\s*<think>", re.IGNORECASE)
_CLOSE_RE = re.compile(r"</think>", re.IGNORECASE)


@dataclass
class Reply:
    """A completion read for its trace: ``trace`` is None for a plain model's answer."""

    trace: str | None
    answer_text: str
    truncated: bool


def read_reply(completion: Completion, reasoning: str = "auto") -> Reply:
    """Split ``completion`` into trace and answer text (``reasoning="off"``: never split)."""
    text = completion.text or ""
    cut = completion.finish_reason == "length"
    if reasoning == "off":
        return Reply(None, text, cut)
    if completion.reasoning and completion.reasoning.strip():
        # A server-side parser that never saw "</think>" leaves the content empty.
        return Reply(completion.reasoning.strip(), text, cut or not text.strip())
    opened = _OPEN_RE.match(text)
    close = _CLOSE_RE.search(text)
    if close and (opened or _OPEN_RE.search(text[:close.start()]) is None):
        start = opened.end() if opened else 0
        return Reply(text[start:close.start()].strip(), text[close.end():], cut)
    if opened:  # "<think>" and no end: cut off while thinking
        return Reply(text[opened.end():].strip(), "", True)
    return Reply(None, text, cut)
