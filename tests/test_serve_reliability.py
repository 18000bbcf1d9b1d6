"""``serve`` under abuse, on loopback: limits answer before any work, a full queue says when to
retry, a disconnected client's work stops, a small request overtakes a maximal one, errors say
nothing of the internals, every status is counted, and SIGTERM ends the server. Bounded in count
and time; the assertions are on outcomes and orderings, never on wall-clock numbers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import torch

from reasondistill import api
from reasondistill.serving import Limits, StudentServer, background_server, create_app

TASK = "synthetic/coin_flip"
QUESTION = "A coin is heads up. Tom flips the coin. Is the coin still heads up?"
LIMITS = {"max_prompt_tokens": 64, "max_tokens": 2048, "max_request_work": 16384, "max_body_bytes": 65536}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("reliability") / "pt"
    api.train("post_thinking", TASK, out, student="micro", n=32, vocab_size=320, progress=False,
              training={"max_steps": 10, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0})
    yield out
    torch.set_num_threads(threads)


def serve(run, **options):
    limits = Limits(**{**LIMITS, **options.pop("limits", {})})
    student = StudentServer(run, limits=limits, **options)
    return student, background_server(create_app(student))


def long_body(prompts: int, tokens: int, **extra) -> dict:
    """A request that decodes exactly ``tokens`` per prompt (min_tokens holds eos and stops off)."""
    return {"prompt": [QUESTION] * prompts, "max_tokens": tokens, "min_tokens": tokens, **extra}


async def until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def stats(http: httpx.AsyncClient) -> dict:
    return (await http.get("/stats")).json()


def test_limits_answer_before_any_work(run):
    student, server = serve(run)
    with server as url, httpx.Client(base_url=url, timeout=30) as http:
        huge = http.post("/v1/completions", json={"prompt": "heads " * 2000})  # refused by its characters
        over = http.post("/v1/completions", json={"prompt": "heads " * 80})    # refused by its tokens
        body = http.post("/v1/completions", content=b'{"prompt": "' + b"x" * 70000 + b'"}',
                         headers={"content-type": "application/json"})
        work = http.post("/v1/completions", json={"prompt": ["q"] * 9, "max_tokens": 2048})
        s = http.get("/stats").json()
    assert huge.status_code == over.status_code == work.status_code == 400 and body.status_code == 413
    assert "characters" in huge.json()["error"]["message"] and huge.json()["error"]["code"] == "context_length_exceeded"
    assert "tokens, over this server's limit of 64" in over.json()["error"]["message"]
    assert "split it" in work.json()["error"]["message"]
    assert s["tokens"] == 0 and s["batches"] == 0  # nothing was decoded for any of them
    assert s["status"]["400"] == 3 and s["status"]["413"] == 1


@pytest.mark.parametrize("bound", ["requests", "work"])
def test_full_queue_refuses_with_retry_after(run, bound):
    options = {"max_queue": 1} if bound == "requests" else {"max_queued_work": 3000}
    student, server = serve(run, max_batch=4, **options)

    async def go(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            big = asyncio.create_task(http.post("/v1/completions", json=long_body(2, 2048)))
            await until(lambda: _started(http))
            r = await http.post("/v1/completions", json={"prompt": QUESTION, "max_tokens": 2048})
            big.cancel()
            return r
    with server as url:
        r = asyncio.run(go(url))
    assert r.status_code == (429 if bound == "requests" else 503), r.text
    assert int(r.headers["Retry-After"]) >= 1 and "retry later" in r.json()["error"]["message"]


async def _started(http) -> bool:
    s = await stats(http)
    return s["tokens"] > 0 or s["active_rows"] > 0


def test_api_key(run, monkeypatch):
    student, server = serve(run, limits={"api_key": "s3cret"})
    with server as url, httpx.Client(base_url=url, timeout=30) as http:
        body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 4}
        missing = http.post("/v1/chat/completions", json=body)
        wrong = http.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"})
        right = http.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer s3cret"})
        health = http.get("/health")
    assert missing.status_code == wrong.status_code == 401 and "API key" in missing.json()["error"]["message"]
    assert right.status_code == 200 and health.status_code == 200


def test_500_is_generic_logged_and_counted(run, caplog):
    student, server = serve(run)

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")
    student.method.rows = broken
    with caplog.at_level(logging.ERROR, logger="reasondistill.serve"), server as url, \
            httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/completions", json={"prompt": QUESTION, "max_tokens": 4})
        s = http.get("/stats").json()
    assert r.status_code == 500 and "secret" not in r.text and "server log" in r.json()["error"]["message"]
    assert s["status"]["500"] == 1 and s["errors"] == 1
    assert "secret internal detail" in caplog.text


@pytest.mark.parametrize("stream", [False, True])
def test_work_of_a_disconnected_client_is_cancelled(run, stream):
    student, server = serve(run, max_batch=8)
    work = 8 * 2048

    async def go(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            if stream:
                body = {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": 2048, "min_tokens": 2048,
                        "stream": True, "n": 1}
                work_here = 2048
                task = asyncio.create_task(_read_stream(http, body))
            else:
                work_here = work
                task = asyncio.create_task(http.post("/v1/completions", json=long_body(8, 2048)))
            await until(lambda: _started(http))
            task.cancel()  # the client goes away mid-request
            await until(lambda: _idle(http))
            first = await stats(http)
            await asyncio.sleep(0.3)
            return first, await stats(http), work_here
    with server as url:
        first, later, asked = asyncio.run(go(url))
    assert first["cancelled_jobs"] == 1 and first["tokens"] < asked
    assert later["tokens"] == first["tokens"] and later["queued_requests"] == 0  # nothing goes on decoding


async def _read_stream(http, body):
    async with http.stream("POST", "/v1/chat/completions", json=body) as r:
        async for _ in r.aiter_lines():
            pass


async def _idle(http) -> bool:
    s = await stats(http)
    return s["queued_requests"] == 0 and s["active_rows"] == 0


def test_a_small_request_overtakes_a_maximal_one(run):
    """4 rows of 2048 tokens (the per-request budget exactly) in batches of 2: round-robin puts the
    small request in the next slice, so it finishes while the big one still runs."""
    student, server = serve(run, max_batch=2, slice_tokens=4, limits={"max_request_work": 8192})

    async def go(url):
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            big = asyncio.create_task(http.post("/v1/completions", json=long_body(4, 2048)))
            await until(lambda: _started(http))
            small = await http.post("/v1/completions", json={"prompt": QUESTION, "max_tokens": 8, "answer_only": True})
            big_done_first, progress = big.done(), (await stats(http))["tokens"]
            big.cancel()
            return small, big_done_first, progress
    with server as url:
        small, big_done_first, progress = asyncio.run(go(url))
    assert small.status_code == 200 and small.json()["usage"]["completion_tokens"] >= 1
    assert not big_done_first, "the small request waited for the maximal one"
    # ...nor for one of its rows to end: the small one was handed back the moment it ended.
    assert progress < 2048, progress
    assert student.scheduler.stats["slices_cut"] >= 1


def test_sigterm_ends_the_server(run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "reasondistill", "serve", str(run), "--port", str(port),
                             "--threads", "1", "--shutdown-timeout", "1"], env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"

        async def go():
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                async def up() -> bool:
                    assert proc.poll() is None, proc.stderr.read().decode()
                    try:
                        return (await http.get("/health")).status_code == 200
                    except httpx.TransportError:
                        return False
                await until(up, timeout=120)
                big = asyncio.create_task(http.post("/v1/completions", json={**long_body(8, 2048), "max_tokens": 2048}))
                await until(lambda: _started(http))
                proc.send_signal(signal.SIGTERM)
                try:
                    await big
                except httpx.HTTPError:
                    pass
        asyncio.run(go())
        assert proc.wait(timeout=30) is not None  # ended (bounded wait), though a request was running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
