"""The teacher interface: one :class:`Call` in, one :class:`Completion` out (see the package docstring)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from ..tasks import Example

TEACHER_FORMS = "openai:MODEL, hf:ID_OR_PATH or scripted"


@dataclass
class Call:
    """One request to a teacher. ``example`` and ``kind`` are context (the scripted teacher needs
    them); what decides the answer, and so the store key, is the prompt, the parameters and the
    sample index."""

    prompt: str
    kind: str
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str] | None
    sample: int
    example: Example

    def params(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": self.stop}


@dataclass
class Completion:
    """One answer. ``reasoning`` is a trace the server returned beside the text (DeepSeek's
    ``reasoning_content``, vLLM's and OpenRouter's ``reasoning``); ``finish_reason`` is "stop",
    "length" (cut at max_tokens) or None when the teacher cannot tell; ``usage`` holds
    ``prompt_tokens``, ``completion_tokens`` and ``thinking_tokens`` as far as they are known."""

    text: str
    reasoning: str | None = None
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Completion":
        return cls(d.get("text") or "", d.get("reasoning"), d.get("finish_reason"), dict(d.get("usage") or {}))


class Teacher:
    """The interface: ``complete`` one call; ``identity`` says what makes two teachers the same
    (it is part of every call's store key, so a different server or model is never served another
    one's answers), ``call_identity`` what else of one call decides its answer."""

    kind: ClassVar[str] = "base"

    def __init__(self, spec: str, model: str) -> None:
        self.spec, self.model = spec, model
        self.requests = 0   # requests sent, retries included
        self.retries = 0

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model}

    def call_identity(self, call: Call) -> dict[str, Any]:
        """Parts of one call, beyond prompt and parameters, that change the answer (none for a
        model; the scripted teacher answers from the example itself)."""
        return {}

    async def complete(self, call: Call) -> Completion:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections, threads, models."""
