"""A teacher from its spec: ``openai:MODEL``, ``hf:ID_OR_PATH`` or ``scripted``."""

from __future__ import annotations

from ..errors import UserError
from .base import TEACHER_FORMS, Teacher


def get_teacher(spec: str, *, base_url: str | None = None, api: str | None = None, concurrency: int = 8,
                timeout: float = 60.0, max_retries: int = 6, backoff: float = 1.0,
                extra_body: dict | None = None, device: str | None = None) -> Teacher:
    """A teacher from its spec: ``openai:MODEL``, ``hf:ID_OR_PATH`` or ``scripted``."""
    kind, _, name = str(spec).partition(":")
    if kind in ("openai", "hf") and not name:
        raise UserError(f"teacher '{spec}' needs a model name after '{kind}:'")
    if kind != "openai" and (base_url or extra_body):
        raise UserError(f"--base-url and --extra-body apply to openai: teachers, not '{spec}'")
    if kind == "openai":
        from .openai_teacher import OpenAITeacher
        return OpenAITeacher(name, base_url=base_url, api=api or "chat", timeout=timeout,
                             max_retries=max_retries, backoff=backoff, extra_body=extra_body)
    if kind == "hf":
        from .hf_teacher import HFTeacher
        return HFTeacher(name, api=api, batch_size=concurrency, device=device)
    if kind == "scripted" and not name:
        from .scripted import ScriptedTeacher
        return ScriptedTeacher()
    raise UserError(f"unknown teacher '{spec}'; valid: {TEACHER_FORMS}")
