"""Which calls one (question, sample) needs, and the teacher record its answers make.

A question costs one call when the response carries its own answer: a reasoning teacher's trace
comes apart from the answer (see :mod:`.reasoning`), and few-shot answers in the rationale. Only a
plain model under zero-shot prompting gets the second, answer-extracting call. The plan reads the
call store first, call by call, so the online workers and the batch API share one rule for what
is still missing, and a rerun asks for exactly that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..rationales import FewShotCoT, ZeroShotCoT, make_record
from ..tasks import Example, extract_answer
from .base import Call, Completion, Teacher
from .reasoning import read_reply
from .store import CallStore, call_key


@dataclass
class ItemState:
    """One (question, sample) and the answers it has so far, in call order."""

    example: Example
    sample: int
    done: list[Completion] = field(default_factory=list)


def teacher_label(identity: dict[str, Any]) -> str:
    """How a stored call's teacher is named to the user: ``openai:m at http://...``."""
    label = f"{identity.get('kind')}:{identity.get('model')}" if identity.get("kind") != "scripted" else "scripted"
    return f"{label} at {identity['url']}" if identity.get("url") else label


class CallPlan:
    def __init__(self, prompter: ZeroShotCoT | FewShotCoT, teacher: Teacher, store: CallStore, temperature: float,
                 top_p: float, reasoning: str = "auto") -> None:
        self.prompter, self.teacher, self.store = prompter, teacher, store
        self.temperature, self.top_p, self.reasoning = temperature, top_p, reasoning
        self.identity = teacher.identity()
        self.hits = 0

    def next_call(self, state: ItemState) -> Call | None:
        """The call this item still needs, or None when it is complete."""
        ex = state.example
        first = self.prompter.reasoning(ex, self.temperature)
        if not state.done:
            return Call(first.prompt, first.kind, first.max_tokens, first.temperature, self.top_p, first.stop,
                        state.sample, ex)
        reply = read_reply(state.done[0], self.reasoning)
        if (len(state.done) > 1 or not self.prompter.two_stage or reply.trace is not None or reply.truncated
                or not reply.answer_text.strip()):
            return None
        second = self.prompter.answering(ex, first.prompt, reply.answer_text)
        return Call(second.prompt, second.kind, second.max_tokens, second.temperature, self.top_p, second.stop,
                    state.sample, ex)

    def key(self, call: Call) -> str:
        return call_key(self.identity, call.prompt, call.params(), call.sample, self.teacher.call_identity(call))

    def advance(self, state: ItemState) -> tuple[Call, str] | None:
        """Take stored answers as far as they go; the first call (and key) the store lacks."""
        while (call := self.next_call(state)) is not None:
            key = self.key(call)
            found = self.store.get(key)
            if found is None:
                return call, key
            self.hits += 1
            state.done.append(found)
        return None

    def finish(self, state: ItemState, call: Call, key: str, completion: Completion) -> None:
        """Commit one answered call (before it is used) and append it to its item."""
        self.store.put(key, {"teacher": self.identity, "prompt": call.prompt, **call.params(), "sample": call.sample,
                             "kind": call.kind, "id": call.example.id}, completion)
        state.done.append(completion)

    def record(self, state: ItemState, samples: int) -> dict[str, Any]:
        """The teacher record of a complete item: rationale = the trace when there is one."""
        ex, done = state.example, state.done
        reply = read_reply(done[0], self.reasoning)
        if reply.trace is not None:
            rationale = reply.trace
            answer = (extract_answer(reply.answer_text, ex.answer_type, ex.choices) if reply.answer_text.strip()
                      else None)
            line = reply.answer_text.strip()
        else:
            rationale = reply.answer_text
            second = done[1].text if len(done) > 1 else None
            answer, line = (self.prompter.parse(ex, rationale, second) if rationale.strip() and
                            (second is not None or not self.prompter.two_stage) else (None, ""))
        usage: dict[str, int] = {}
        for c in done:
            for k, v in c.usage.items():
                usage[k] = usage.get(k, 0) + v
        extra: dict[str, Any] = {"truncated": reply.truncated, "finish_reason": done[0].finish_reason,
                                 "usage": usage, "rationale_tokens": rationale_tokens(rationale, reply, done[0])}
        if "thinking_tokens" in usage:
            extra["thinking_tokens"] = usage["thinking_tokens"]
        return make_record(ex, rationale, answer, self.teacher.spec, sample=state.sample, samples=samples,
                           answer_line=line, extra=extra)


def rationale_tokens(rationale: str, reply, completion: Completion) -> int:
    """The rationale's length in teacher tokens: the server's thinking count for a trace, its
    completion count for a plain rationale (for a trace without a thinking count, the completion
    count's share by characters), else a word-and-symbol count (the scripted teacher)."""
    usage = completion.usage
    if reply.trace is not None and "thinking_tokens" in usage:
        return usage["thinking_tokens"]
    if "completion_tokens" in usage:
        if reply.trace is None:
            return usage["completion_tokens"]
        share = len(rationale) / max(1, len(rationale) + len(reply.answer_text))
        return round(usage["completion_tokens"] * share)
    return len(re.findall(r"\w+|[^\w\s]", rationale))
