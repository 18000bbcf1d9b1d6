"""The FastAPI app: OpenAI-style routes, errors and streaming over a :class:`StudentServer`.

Every limit is checked before a request is admitted; a client that disconnects has its work
cancelled (non-streaming requests are watched while they wait; a streaming response's task is
cancelled by Starlette); a 500 says only that something failed, and the server log has the detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..scheduler import Busy, Job, JobCancelled
from .limits import APIError, Guard
from .student import StudentServer, cut_at

MAX_N = 8
log = logging.getLogger("reasondistill.serve")


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI fields (user, logprobs, seed...) are ignored

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    min_tokens: int = Field(0, ge=0)  # as in vLLM: no eos or stop before this many tokens
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    stream: bool = False
    answer_only: bool = False
    think_budget: int | None = Field(None, ge=0)  # think-first students: force the answer after N tokens

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Common):
    prompt: str | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)


class ClientGone(Exception):
    """The client disconnected while its request waited; its work was cancelled."""


def _question(messages: list[ChatMessage]) -> str:
    """The last user message's text is the question (system and earlier turns are ignored)."""
    for m in reversed(messages):
        if m.role == "user":
            if isinstance(m.content, list):
                return " ".join(str(p.get("text", "")) for p in m.content if p.get("type") == "text")
            return m.content or ""
    raise APIError(400, "messages must contain a user message (its text is the question)", param="messages")


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text) or [""]


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _usage(outs: list[tuple[str, str, int, int]]) -> dict[str, int]:
    prompt, completion = sum(o[2] for o in outs), sum(o[3] for o in outs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _wait(student: StudentServer, job: Job, request: Request):
    """The job's rows; cancels the job if the client disconnects meanwhile."""
    while True:
        done, _ = await asyncio.wait({job.future}, timeout=0.1)
        if done:
            try:
                return job.future.result()
            except Busy as e:
                raise APIError(e.status, str(e), type="server_error", headers={"Retry-After": str(e.retry_after)})
        if await request.is_disconnected():
            student.scheduler.cancel(job)
            raise ClientGone


def create_app(server: StudentServer | str | Path, **options: Any) -> FastAPI:
    """The FastAPI app for a run folder (or a loaded :class:`StudentServer`), inside its guard."""
    student = server if isinstance(server, StudentServer) else StudentServer(server, **options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(student.scheduler.close)

    app = FastAPI(title="reasondistill student", lifespan=lifespan)
    app.state.student = student
    app.add_middleware(Guard, counters=student.counters, limits=student.limits)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, e: ClientGone):
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        err = (e.errors() or [{}])[0]
        if err.get("type") == "json_invalid":
            return await _api_error(request, APIError(400, "the request body is not valid JSON"))
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        message = err.get("msg", "invalid request")
        return await _api_error(request, APIError(400, f"{where}: {message}" if where else message,
                                                  param=where or None))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        return await _api_error(request, APIError(e.status_code, str(e.detail),
                                                  code=None if e.status_code != 404 else "not_found"))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/stats")
    async def stats():
        s = student.scheduler
        return {**student.counters, **s.stats, "queued_requests": len(s.jobs), "queued_work": s.queued_work}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{
            "id": student.name, "object": "model", "created": int(time.time()), "owned_by": "reasondistill",
            "method": student.method.name, "answer_first": student.method.answer_first,
            "max_prompt_tokens": student.prompt_limit}]}

    async def answer(questions: list[str], req: _Common, request: Request, head: dict, choice, chat: bool):
        max_tokens = student.check(req, len(questions))
        if req.stream and (len(questions) > 1 or req.n > 1):
            raise APIError(400, "streaming takes one prompt and n=1", param="stream")
        await student.check_lengths(questions)
        if req.stream:
            return _stream(student, questions[0], req, max_tokens, head, choice, chat)
        job = student.submit(questions, req, max_tokens)
        rows = await _wait(student, job, request)
        outs = [student.choice(row, ex, req) for row, ex in zip(rows, job.examples)]
        return {**head, "choices": [choice(i, t, f) for i, (t, f, _, _) in enumerate(outs)], "usage": _usage(outs)}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts:
            raise APIError(400, "prompt must not be empty", param="prompt")
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": student.name}
        return await answer(prompts, req, request, head, lambda i, text, done: {
            "index": i, "text": text, "logprobs": None, "finish_reason": done}, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, request: Request):
        question = _question(req.messages)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": student.name}
        if req.stream:
            head["object"] = "chat.completion.chunk"
            return await answer([question], req, request, head, lambda i, text, done: {
                "index": i, "delta": {} if done else {"content": text}, "finish_reason": done}, chat=True)
        return await answer([question], req, request, head, lambda i, text, done: {
            "index": i, "message": {"role": "assistant", "content": text.lstrip()}, "finish_reason": done}, chat=True)

    return app


def _stream(student: StudentServer, question: str, req: _Common, max_tokens: int, head: dict, choice,
            chat: bool) -> StreamingResponse:
    """Server-sent events, word by word as the row grows: an answer-first student's answer line
    goes out the moment it is written, before the rationale. Admission (429/503) happens here,
    before the response starts."""
    updated = asyncio.Event()
    job = student.submit([question], req, max_tokens, on_update=updated.set)
    example = job.examples[0]

    async def events() -> AsyncIterator[str]:
        try:
            if chat:
                yield _sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                 "finish_reason": None}]})
            sent, reason = "", None
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(updated.wait(), 0.5)
                updated.clear()
                final = job.future.done()
                if final and job.future.exception() is not None:
                    raise job.future.exception()
                row = job.rows[0] if job.rows else None
                if row is not None:
                    text, cut = student.visible(row, example, req, final)
                    if chat:
                        text = text.lstrip()
                    if text.startswith(sent) and len(text) > len(sent):
                        for piece in _pieces(text[len(sent):]):
                            yield _sse({**head, "choices": [choice(0, piece, None)]})
                        sent = text
                    if final:
                        reason = student.choice(row, example, req)[1]
                if final:
                    break
            yield _sse({**head, "choices": [choice(0, "", reason or "stop")]})
        except (APIError, Busy, JobCancelled) as e:  # headers are sent: report in-band
            yield _sse({"error": {"message": getattr(e, "message", str(e)), "type": "server_error"}})
        except Exception as e:  # noqa: BLE001 - keep the server up; the log has the detail
            log.error("internal error while streaming", exc_info=e)
            yield _sse({"error": {"message": "internal error (the server log has the detail)",
                                  "type": "server_error"}})
        finally:
            if not job.future.done():
                student.scheduler.cancel(job)  # the client left (or the stream broke): stop its work
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


__all__ = ["APIError", "ChatRequest", "CompletionRequest", "StudentServer", "create_app", "cut_at"]
