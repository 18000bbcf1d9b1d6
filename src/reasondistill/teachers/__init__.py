"""Teachers: where rationales come from, behind one small async interface.

- ``openai:MODEL``: any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, gateways, or
  ``reasondistill serve``), async with bounded concurrency, retries and timeouts;
- ``hf:ID_OR_PATH``: a local causal LM through transformers, batched;
- ``scripted``: the synthetic tasks' built-in teacher, so the whole pipeline runs offline.

A teacher only turns one :class:`Call` into a :class:`Completion` (the text, a reasoning trace
when the server returns one apart, why it stopped, token counts); prompting, the durable call
store, filtering and the output file are the job of :func:`teach`, the same for every teacher.
"""

from .base import TEACHER_FORMS, Call, Completion, Teacher
from .registry import get_teacher
from .run import teach

__all__ = ["Call", "Completion", "TEACHER_FORMS", "Teacher", "get_teacher", "teach"]
