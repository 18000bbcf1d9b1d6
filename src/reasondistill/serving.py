"""``reasondistill serve``: an OpenAI-compatible server (FastAPI + uvicorn) for a trained student.

Any OpenAI client, ``reasondistill teach --teacher openai:...`` included, can talk to a student:
``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions``, with streaming. The request's text
(the prompt, or the last user message) is the question; the server wraps it in the prompt format
the student was trained on (``method.prompt``), so clients never need to know the template.

Answer-first students (post_thinking, pst) write the answer line first. A request with
``"answer_only": true`` (an extra body field) or ``"stop": ["\\n"]`` gets just that line, and
decoding stops right after it: the whole point of those methods is a fast answer. Otherwise the
rationale follows, decoded as a second step; a streaming client receives the answer as soon as it
exists, before the rationale is written.

Concurrent requests meet in a :class:`~reasondistill.teachers.batching.Batcher` and run as one
batched generation in a worker thread; a full queue answers 503 with Retry-After, bad requests get
OpenAI-style 4xx JSON errors, and nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import UserError
from .options import REQUIRED, Options, add_flags, opt, parse_command
from .tasks import Example
from .teachers.batching import Batcher, GenJob, GenResult, QueueFull, cut_at, generate_jobs

MAX_N = 8


# ----- requests ---------------------------------------------------------------------------------

class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI fields (user, logprobs, seed...) are ignored

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    stream: bool = False
    answer_only: bool = False

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


class APIError(Exception):
    """An OpenAI-style error response: status, message, type, param, code."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status, headers=self.headers)


# ----- the student behind the API ---------------------------------------------------------------

class StudentServer:
    """A trained run folder, its batcher, and the two-step answer-first decoding."""

    def __init__(self, model_dir: str | Path, *, name: str | None = None, max_batch: int = 32,
                 wait_ms: float = 3.0, max_queue: int = 1024, max_tokens_limit: int = 2048) -> None:
        from .api import load_run
        self.method, self.model, self.tokenizer, self.record = load_run(model_dir)
        self.name = name or Path(model_dir).resolve().name
        self.answer_type = self.record.get("answer_type", "text")
        self.default_max_tokens = int(self.record.get("max_new_tokens", 128))
        self.max_tokens_limit = max_tokens_limit
        ends = self.method.layout.end_ids(self.tokenizer)  # the chat template's end of turn, too
        self.batcher = Batcher(lambda jobs: generate_jobs(self.model, self.tokenizer, jobs, ends), max_batch=max_batch,
                               wait_ms=wait_ms, max_queue=max_queue)
        self.counters = {"requests": 0, "in_flight": 0, "max_in_flight": 0, "errors": 0}

    def example(self, question: str) -> Example:
        return Example(id="request", question=question, answer="", answer_type=self.answer_type)

    def check(self, req: _Common) -> int:
        """The request's token budget, after checking the model name and limits."""
        if req.model is not None and req.model != self.name:
            raise APIError(404, f"model '{req.model}' does not exist; this server serves '{self.name}'",
                           param="model", code="model_not_found")
        max_tokens = req.max_completion_tokens or req.max_tokens or self.default_max_tokens
        if max_tokens > self.max_tokens_limit:
            raise APIError(400, f"max_tokens {max_tokens} is above this server's limit of {self.max_tokens_limit}",
                           param="max_tokens")
        return max_tokens

    async def _run(self, job: GenJob) -> GenResult:
        try:
            return await self.batcher.submit(job)
        except QueueFull as e:
            raise APIError(503, f"server busy ({e}); retry later", type="server_error",
                           headers={"Retry-After": "1"}) from None

    async def steps(self, question: str, req: _Common, max_tokens: int) -> AsyncIterator[tuple[str, GenResult]]:
        """Yield (text piece, its generation) as each decoding step finishes: for answer-first
        students the answer line, then (unless only the answer is wanted) the rationale."""
        stops = req.stops()
        prompt = self.method.prompt(self.example(question))
        answer_first = self.method.answer_first
        first = await self._run(GenJob(prompt, max_tokens, req.temperature, req.top_p,
                                       stop_at_newline=answer_first or "\n" in stops))
        if not answer_first:
            text = first.text
            if req.answer_only:
                answer, _ = self.method.parse(text, self.example(question))
                text = answer or ""
            yield text, first
            return
        line, has_newline = cut_at(first.text, ["\n"])
        if req.answer_only or "\n" in stops or not has_newline or first.completion_tokens >= max_tokens:
            yield (line if (req.answer_only or "\n" in stops) else first.text), first
            return
        yield first.text, first
        rest = await self._run(GenJob(prompt + first.text, max_tokens - first.completion_tokens,
                                      req.temperature, req.top_p))
        yield rest.text, rest

    async def generate(self, question: str, req: _Common, max_tokens: int) -> tuple[str, str, int, int]:
        """(text, finish_reason, prompt tokens, completion tokens) for one choice."""
        pieces, last, prompt_tokens, used = [], None, 0, 0
        async for text, result in self.steps(question, req, max_tokens):
            pieces.append(text)
            prompt_tokens = prompt_tokens or result.prompt_tokens
            used += result.completion_tokens
            last = result
        text, cut = cut_at("".join(pieces), req.stops())
        return text, "stop" if cut or req.answer_only else last.finish_reason, prompt_tokens, used


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


# ----- the app ----------------------------------------------------------------------------------

class _Counting:
    """ASGI middleware: requests, in flight, the most in flight at once, error responses."""

    def __init__(self, app, counters: dict[str, int]) -> None:
        self.app, self.counters = app, counters

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        c = self.counters
        c["requests"] += 1
        c["in_flight"] += 1
        c["max_in_flight"] = max(c["max_in_flight"], c["in_flight"])

        async def counting_send(message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                c["errors"] += 1
            await send(message)
        try:
            await self.app(scope, receive, counting_send)
        finally:
            c["in_flight"] -= 1


def create_app(server: StudentServer | str | Path, **options: Any) -> FastAPI:
    """The FastAPI app for a run folder (or a loaded :class:`StudentServer`)."""
    student = server if isinstance(server, StudentServer) else StudentServer(server, **options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await student.batcher.aclose()

    app = FastAPI(title="reasondistill student", lifespan=lifespan)
    app.state.student = student
    app.add_middleware(_Counting, counters=student.counters)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        err = (e.errors() or [{}])[0]
        if err.get("type") == "json_invalid":
            return APIError(400, "the request body is not valid JSON").response()
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        message = err.get("msg", "invalid request")
        return APIError(400, f"{where}: {message}" if where else message, param=where or None).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        return APIError(e.status_code, str(e.detail), code=None if e.status_code != 404 else "not_found").response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception):
        return APIError(500, f"internal error: {type(e).__name__}: {e}", type="server_error").response()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/stats")
    async def stats():
        return {**student.counters, "batches": student.batcher.batches,
                "largest_batch": student.batcher.largest_batch}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{
            "id": student.name, "object": "model", "created": int(time.time()), "owned_by": "reasondistill",
            "method": student.method.name, "answer_first": student.method.answer_first}]}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest):
        max_tokens = student.check(req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts:
            raise APIError(400, "prompt must not be empty", param="prompt")
        head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": student.name}
        if req.stream:
            if len(prompts) > 1 or req.n > 1:
                raise APIError(400, "streaming takes one prompt and n=1", param="stream")
            return _stream(student, prompts[0], req, max_tokens, head,
                           lambda text, done: {"index": 0, "text": text, "logprobs": None, "finish_reason": done})
        outs = await asyncio.gather(*(student.generate(p, req, max_tokens) for p in prompts for _ in range(req.n)))
        return {**head, "choices": [{"index": i, "text": t, "logprobs": None, "finish_reason": f}
                                    for i, (t, f, _, _) in enumerate(outs)], "usage": _usage(outs)}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        max_tokens = student.check(req)
        question = _question(req.messages)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": student.name}
        if req.stream:
            if req.n > 1:
                raise APIError(400, "streaming takes n=1", param="stream")
            head["object"] = "chat.completion.chunk"
            return _stream(student, question, req, max_tokens, head,
                           lambda text, done: {"index": 0, "delta": {} if done else {"content": text},
                                               "finish_reason": done}, chat=True)
        outs = await asyncio.gather(*(student.generate(question, req, max_tokens) for _ in range(req.n)))
        return {**head, "choices": [{"index": i, "message": {"role": "assistant", "content": t.lstrip()},
                                     "finish_reason": f} for i, (t, f, _, _) in enumerate(outs)],
                "usage": _usage(outs)}

    return app


def _usage(outs: list[tuple[str, str, int, int]]) -> dict[str, int]:
    prompt, completion = sum(o[2] for o in outs), sum(o[3] for o in outs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _stream(student: StudentServer, question: str, req: _Common, max_tokens: int, head: dict, choice,
            chat: bool = False) -> StreamingResponse:
    """Server-sent events: each decoding step is sent as soon as it is done, word by word."""

    async def events() -> AsyncIterator[str]:
        if chat:
            yield _sse({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "finish_reason": None}]})
        sent, reason = "", "length"
        try:
            async for text, result in student.steps(question, req, max_tokens):
                full, cut = cut_at(sent + text, req.stops())
                new = full[len(sent):].lstrip() if chat and not sent else full[len(sent):]
                for piece in _pieces(new) if new else []:
                    yield _sse({**head, "choices": [choice(piece, None)]})
                sent, reason = full, "stop" if cut else result.finish_reason
                if cut:
                    break
            if req.answer_only:
                reason = "stop"
        except APIError as e:
            yield _sse({"error": {"message": e.message, "type": e.type, "code": e.code}})
            reason = None
        except Exception as e:  # headers are sent: report in-band, keep the server up
            yield _sse({"error": {"message": f"internal error: {type(e).__name__}: {e}", "type": "server_error"}})
            reason = None
        if reason is not None:
            yield _sse({**head, "choices": [choice("", reason)]})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


# ----- running it -------------------------------------------------------------------------------

@contextlib.contextmanager
def background_server(app, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free port; yields the base URL (``http://h:p``).
    For tests and benchmarks: the socket is bound before the thread starts, so no port race."""
    import uvicorn
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class ServeOptions(Options):
    """``reasondistill serve``: one field per flag (and ``--config`` key); see options.py."""

    command: ClassVar[str] = "serve"

    model_dir: str = opt(REQUIRED, "run folder written by train", positional=True)
    host: str = opt("127.0.0.1", "address to listen on")
    port: int = opt(8000, "port to listen on (0: any free one)", ge=0, le=65535)
    name: str | None = opt(None, "model id clients use (default: the folder name)")
    max_batch: int = opt(32, "most requests decoded together", ge=1)
    batch_wait_ms: float = opt(3.0, "how long a batch waits for company", ge=0)
    max_queue: int = opt(1024, "waiting requests before 503", ge=1)
    threads: int | None = opt(None, "torch CPU threads (1 is fastest for tiny students on a busy CPU; "
                              "default: torch's)", ge=1)
    log_level: str = opt("warning", "uvicorn log level (info shows each request)")


def cmd_serve(args) -> None:
    import uvicorn
    o = parse_command(ServeOptions, args)
    if not Path(o.model_dir).is_dir():
        raise UserError("not a folder", path=o.model_dir)
    if o.threads:
        import torch
        torch.set_num_threads(o.threads)
    student = StudentServer(o.model_dir, name=o.name, max_batch=o.max_batch, wait_ms=o.batch_wait_ms,
                            max_queue=o.max_queue)
    app = create_app(student)
    print(f"serving {student.name} ({student.method.name}) at http://{o.host}:{o.port}/v1  (Ctrl-C stops)",
          flush=True)
    try:
        uvicorn.run(app, host=o.host, port=o.port, log_level=o.log_level)
    except OSError as e:
        raise UserError(f"cannot listen on {o.host}:{o.port} ({e.strerror or e})") from None


def register(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible server for a trained student (answer-first aware)")
    add_flags(p, ServeOptions)
    p.set_defaults(func=cmd_serve)
