"""The ``hf:ID_OR_PATH`` teacher: a local causal LM through transformers, batched.

Calls from ``teach``'s concurrent workers meet in a :class:`~reasondistill.scheduler.Scheduler` (the
one ``serve`` uses), so ``--concurrency`` is the generation batch size. With ``api="chat"`` (the
default when the tokenizer has a chat template) the prompt goes in as a user message through the
template; otherwise it is continued as raw text, which suits base models and reasondistill's own
students.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..generation import Row, StopRule
from ..scheduler import Scheduler
from ..layout import Layout
from .base import Call, Completion, Teacher


def cut_at(text: str, stops: list[str]) -> str:
    """``text`` up to the earliest stop string (not included)."""
    hits = [text.index(s) for s in stops if s and s in text]
    return text[:min(hits)] if hits else text


class HFTeacher(Teacher):
    kind = "hf"

    def __init__(self, name: str, *, api: str | None = None, batch_size: int = 8, device: str | None = None) -> None:
        super().__init__(f"hf:{name}", str(Path(name).resolve()) if Path(name).exists() else name)
        import torch
        from transformers import AutoModelForCausalLM

        from ..models import load_tokenizer
        if api not in (None, "chat", "completions"):
            raise UserError(f"--api must be 'chat' or 'completions', not '{api}'")
        try:
            self.tokenizer = load_tokenizer(name)
            self.lm = AutoModelForCausalLM.from_pretrained(name)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load teacher model '{name}': {str(e).splitlines()[0]}") from None
        self.lm.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        self.api = api or ("chat" if getattr(self.tokenizer, "chat_template", None) else "completions")
        if self.api == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"teacher '{name}' has no chat template; use --api completions")
        self.scheduler = Scheduler(self.lm, self.tokenizer, max_batch=max(1, batch_size))
        # A chat reply ends at the template's end of turn as well as at the eos.
        self.ends = frozenset(Layout(self.tokenizer, chat=self.api == "chat").end_ids())

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "api": self.api}

    def render(self, prompt: str) -> str:
        if self.api == "chat":
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt

    async def complete(self, call: Call) -> Completion:
        self.requests += 1
        stops = list(call.stop or [])
        ids = self.tokenizer(self.render(call.prompt), add_special_tokens=False).input_ids

        def rows() -> list[Row]:
            return [Row(ids, call.max_tokens, stop=StopRule(strings=tuple(stops)), temperature=call.temperature,
                        top_p=call.top_p, end_ids=self.ends)]
        [row] = await self.scheduler.run(rows, call.max_tokens)
        text = cut_at(row.text, stops)
        return Completion(text, None, row.finish_reason,
                          {"prompt_tokens": len(ids), "completion_tokens": len(row.generated)})

    async def aclose(self) -> None:
        self.scheduler.close()
