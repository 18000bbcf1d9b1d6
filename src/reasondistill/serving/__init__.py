"""``reasondistill serve``: an OpenAI-compatible server (FastAPI + uvicorn) for a trained student.

Any OpenAI client, ``reasondistill teach --teacher openai:...`` included, can talk to a student:
``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions``, with streaming. The request's text
(the prompt, or the last user message) is the question; the server answers it through the
student's method (``method.rows`` / ``method.predictions``, what ``eval`` uses), so clients never
need to know the template, and every method's run folder can be served.

Answer-first students (post_thinking, pst, semcot) write the answer line first. A request with
``"answer_only": true`` (an extra body field) or ``"stop": ["\\n"]`` gets just that line, and
decoding stops right after it. Otherwise the rationale follows in the same decoding pass; a
streaming client receives the answer as soon as it exists. ``"think_budget": N`` forces a
think-first student's answer after N thinking tokens; ``"min_tokens"`` works as in vLLM.

Hardening (see ``limits.py`` and ``scheduler.py``): the prompt is limited to the model's context
(or ``--max-prompt-tokens``), checked by its characters before it is tokenised, and the request body
by ``--max-body-bytes``; a request's work (prompts × n × max_tokens) is capped; a full queue answers
429 or 503 with Retry-After before admitting anything; requests share batches round-robin in
bounded slices, so a huge request cannot starve small ones; a client that disconnects has its work
cancelled; ``--api-key`` (or ``REASONDISTILL_API_KEY``) requires ``Authorization: Bearer KEY``;
SIGTERM stops the server within a few seconds; ``/stats`` counts every response status.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from ..errors import UserError
from ..options import REQUIRED, Options, add_flags, opt, parse_command
from .app import create_app
from .limits import Limits
from .student import StudentServer

__all__ = ["Limits", "StudentServer", "background_server", "cmd_serve", "create_app", "register"]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


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
    api_key: str | None = opt(None, "require 'Authorization: Bearer KEY' (default: $REASONDISTILL_API_KEY, else none)")
    max_batch: int = opt(32, "most rows decoded together", ge=1)
    slice_tokens: int = opt(16, "decoding steps after which a batch is re-formed when other requests wait "
                            "(fairness)", ge=1)
    batch_wait_ms: float = opt(2.0, "how long a batch waits for company", ge=0)
    max_queue: int = opt(1024, "requests queued before 429", ge=1)
    max_queued_work: int = opt(4_000_000, "tokens of work (rows x max_tokens) queued before 503", ge=1)
    max_prompt_tokens: int | None = opt(None, "longest prompt (default: the model's context)", ge=1)
    max_tokens_limit: int = opt(2048, "largest max_tokens a request may ask for", ge=1)
    max_request_work: int = opt(262_144, "largest prompts x n x max_tokens one request may ask for", ge=1)
    max_body_bytes: int = opt(4 * 2 ** 20, "largest request body", ge=1)
    shutdown_timeout: float = opt(3.0, "seconds SIGTERM waits for running requests before cancelling them", ge=0)
    threads: int | None = opt(None, "torch CPU threads (1 is fastest for tiny students on a busy CPU; "
                              "default: torch's)", ge=1)
    log_level: str = opt("warning", "uvicorn log level (info shows each request)")


def cmd_serve(args) -> None:
    import uvicorn
    o = parse_command(ServeOptions, args)
    if not Path(o.model_dir).is_dir():
        raise UserError("not a folder", path=o.model_dir)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_key = o.api_key or os.environ.get("REASONDISTILL_API_KEY") or None
    if not api_key and o.host not in LOOPBACK:
        logging.getLogger("reasondistill.serve").warning(
            "serving on %s without an API key: anyone who can reach it can use it (set --api-key or "
            "REASONDISTILL_API_KEY)", o.host)
    if o.threads:
        import torch
        torch.set_num_threads(o.threads)
    limits = Limits(max_prompt_tokens=o.max_prompt_tokens, max_tokens=o.max_tokens_limit,
                    max_request_work=o.max_request_work, max_body_bytes=o.max_body_bytes, api_key=api_key)
    student = StudentServer(o.model_dir, name=o.name, max_batch=o.max_batch, wait_ms=o.batch_wait_ms,
                            slice_tokens=o.slice_tokens, max_queue=o.max_queue,
                            max_queued_work=o.max_queued_work, limits=limits)
    app = create_app(student)
    print(f"serving {student.name} ({student.method.name}) at http://{o.host}:{o.port}/v1  (Ctrl-C stops)",
          flush=True)
    try:
        uvicorn.run(app, host=o.host, port=o.port, log_level=o.log_level,
                    timeout_graceful_shutdown=o.shutdown_timeout)
    except OSError as e:
        raise UserError(f"cannot listen on {o.host}:{o.port} ({e.strerror or e})") from None


def register(sub) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible server for a trained student (answer-first aware)")
    add_flags(p, ServeOptions)
    p.set_defaults(func=cmd_serve)
