"""The scripted teacher: the synthetic tasks' own step-by-step writer, so ``teach`` runs offline.

It ignores the prompt's wording and answers from the example: the rationale already on it (the
synthetic generator's, hallucinations included, or a rationale a file brought along), or a freshly
scripted one for a synthetic example. Its stated answer is the example's teacher answer (gold for
synthetic tasks). Scripted rationales are deterministic, so several samples of one question come
out identical and dedup keeps one. Since its answer comes from the example, not the prompt, the
example's rationale, teacher answer and hallucination flag are part of each call's store key: a
run at another ``--hallucination`` into the same ``--out`` is asked afresh.
"""

from __future__ import annotations

import random
from typing import Any

from ..errors import UserError
from ..tasks import scripted_rationale
from .base import Call, Completion, Teacher


class ScriptedTeacher(Teacher):
    kind = "scripted"

    def __init__(self) -> None:
        super().__init__("scripted", "scripted")

    def call_identity(self, call: Call) -> dict[str, Any]:
        ex = call.example
        return {"id": ex.id, "rationale": ex.rationale, "answer": ex.teacher_answer or ex.answer,
                "hallucinated": bool(ex.meta.get("hallucinated"))}

    def rationale(self, call: Call) -> str:
        ex = call.example
        if ex.rationale:
            return ex.rationale
        if isinstance(ex.meta.get("problem"), dict):
            rng = random.Random(f"{ex.id}/{call.sample}")
            return scripted_rationale(ex, rng, hallucinate=bool(ex.meta.get("hallucinated")))
        raise UserError(f"the scripted teacher cannot explain example '{ex.id}': it is not from a synthetic "
                        "task and carries no rationale; use an openai: or hf: teacher")

    async def complete(self, call: Call) -> Completion:
        self.requests += 1
        answer = call.example.teacher_answer or call.example.answer
        if call.kind == "answer":
            return Completion(f" {answer}.", finish_reason="stop")
        text = self.rationale(call)
        return Completion(f"{text} Therefore, the answer is {answer}." if call.kind == "rationale+answer" else text,
                          finish_reason="stop")
