"""The student behind ``serve``: a run folder answering through its method's own rows.

A request's questions become :class:`~reasondistill.tasks.Example` s and go through
``method.rows`` (the prompt format, stop rules, routing and soft thoughts the method answers with
in ``eval``) and ``method.predictions``; the rows are decoded by the shared fair
:class:`~reasondistill.scheduler.Scheduler`. So every method's run folder can be served, adaptive
(routed), softcot and semcot (soft thoughts) included, and what a client gets is what ``eval``
scored.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..generation import Row, StopRule
from ..scheduler import Busy, Job, Scheduler
from ..tasks import Example
from .limits import APIError, Limits, context_length, longest_token_chars


def cut_at(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string (not included), and whether one was found."""
    hits = [text.index(s) for s in stops if s and s in text]
    return (text[:min(hits)], True) if hits else (text, False)


class StudentServer:
    """A trained run folder, its scheduler and its limits."""

    def __init__(self, model_dir: str | Path, *, name: str | None = None, max_batch: int = 32,
                 wait_ms: float = 2.0, slice_tokens: int = 16, max_queue: int = 1024,
                 max_queued_work: int = 4_000_000, limits: Limits | None = None) -> None:
        from ..api import load_run
        self.method, self.model, self.tokenizer, self.record = load_run(model_dir)
        self.name = name or Path(model_dir).resolve().name
        self.answer_type = self.record.get("answer_type", "text")
        self.default_max_tokens = int(self.record.get("max_new_tokens", 128))
        self.limits = limits or Limits()
        self.max_batch = max_batch
        self.prompt_limit = self.limits.max_prompt_tokens or context_length(self.model) or 4096
        self.token_chars = longest_token_chars(self.tokenizer)
        # What the method's prompt adds to a question (its template, thought slots): one empty question.
        [empty] = self.method.rows(self.model, self.tokenizer, [self.example("")], max_new_tokens=1)
        self.template_tokens = len(empty.prompt_ids)
        self.scheduler = Scheduler(self.model, self.tokenizer, max_batch=max_batch, slice_tokens=slice_tokens,
                                   wait_ms=wait_ms, max_jobs=max_queue, max_queued_work=max_queued_work)
        self.counters: dict[str, Any] = {"requests": 0, "in_flight": 0, "max_in_flight": 0, "errors": 0,
                                         "status": {}}

    def example(self, question: str) -> Example:
        return Example(id="request", question=question, answer="", answer_type=self.answer_type)

    # ----- limits, before any work ----------------------------------------------------------------
    def check(self, req, n_prompts: int) -> int:
        """The request's token budget per choice, after checking the model name and every limit
        that needs no tokenising."""
        if req.model is not None and req.model != self.name:
            raise APIError(404, f"model '{req.model}' does not exist; this server serves '{self.name}'",
                           param="model", code="model_not_found")
        max_tokens = req.max_completion_tokens or req.max_tokens or self.default_max_tokens
        if max_tokens > self.limits.max_tokens:
            raise APIError(400, f"max_tokens {max_tokens} is above this server's limit of {self.limits.max_tokens}",
                           param="max_tokens")
        work = n_prompts * req.n * max_tokens
        if work > self.limits.max_request_work:
            raise APIError(400, f"this request asks for {work} tokens of work (prompts × n × max_tokens), above "
                                f"this server's limit of {self.limits.max_request_work} per request; split it",
                           param="max_tokens", code="request_too_large")
        try:
            self.method.check_budget(req.think_budget)
        except UserError as e:
            raise APIError(400, str(e), param="think_budget") from None
        return max_tokens

    def check_length(self, question: str) -> None:
        """400 for a prompt over the limit: by its length in characters first (no tokenising a
        10 MB prompt), then by its tokens (the method's template included)."""
        limit = self.prompt_limit
        if len(question) > limit * self.token_chars:
            raise APIError(400, f"the prompt is {len(question)} characters, certainly over this server's limit "
                                f"of {limit} prompt tokens", param="prompt", code="context_length_exceeded")
        n = len(self.tokenizer(question, add_special_tokens=False).input_ids) + self.template_tokens
        if n > limit:
            raise APIError(400, f"the prompt is {n} tokens, over this server's limit of {limit}",
                           param="prompt", code="context_length_exceeded")

    async def check_lengths(self, questions: list[str]) -> None:
        """Every prompt's length; tokenising happens off the event loop (a long prompt takes a while)."""
        for q in questions:
            if len(q) > self.prompt_limit * self.token_chars:
                self.check_length(q)  # refused by its characters alone
        await asyncio.to_thread(lambda: [self.check_length(q) for q in questions])

    # ----- work -----------------------------------------------------------------------------------
    def submit(self, questions: list[str], req, max_tokens: int, on_update=None) -> Job:
        """Admit the request's rows (every question × n) or raise 429/503 with Retry-After."""
        examples = [self.example(q) for q in questions for _ in range(req.n)]
        stops = req.stops()
        explain = not (req.answer_only or "\n" in stops)  # answer-first students stop at the answer line

        def rows() -> list[Row]:
            out = self.method.rows(self.model, self.tokenizer, examples, max_new_tokens=max_tokens,
                                   explain=explain, think_budget=req.think_budget, batch_size=self.max_batch)
            for row in out:
                row.temperature, row.top_p = req.temperature, req.top_p
                row.min_new_tokens = min(req.min_tokens, max_tokens)
                if stops:
                    row.stop = row.stop | StopRule(strings=tuple(stops))
            return out
        try:
            job = self.scheduler.submit(rows, len(examples) * max_tokens, on_update)
        except Busy as e:
            raise APIError(e.status, f"server busy ({e}); retry later", type="server_error",
                           code="rate_limit_exceeded" if e.status == 429 else "server_busy",
                           headers={"Retry-After": str(e.retry_after)}) from None
        job.examples = examples  # type: ignore[attr-defined]
        return job

    def answer_only_text(self, row: Row, example: Example) -> str:
        """The answer alone: an answer-first row's answer line as written, else the parsed answer."""
        if row.marker is None and row.answer_end:
            return row.answer_text
        [pred] = self.method.predictions([row], [example])
        return pred.answer or ""

    def visible(self, row: Row, example: Example, req, final: bool) -> tuple[str, bool]:
        """What the client sees of ``row`` now: (text, whether a stop string cut it). While the row
        runs, the last, possibly unfinished word is held back."""
        if req.answer_only:
            if row.answer_tokens is None and not final:
                return "", False
            return self.answer_only_text(row, example), True
        text, cut = cut_at(row.text, req.stops())
        if not final and not cut:
            end = max(text.rfind(" "), text.rfind("\n"))
            text = text[:end + 1] if end >= 0 else ""
        return text, cut

    def choice(self, row: Row, example: Example, req) -> tuple[str, str, int, int]:
        """(text, finish_reason, prompt tokens, completion tokens) of a finished row."""
        text, cut = self.visible(row, example, req, final=True)
        reason = "stop" if cut or req.answer_only or row.finish_reason == "stop" else "length"
        return text, reason, len(row.prompt_ids), len(row.generated)
