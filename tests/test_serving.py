"""``serve``: a trained micro student behind an OpenAI-compatible API on 127.0.0.1, driven by
``teach`` (the round trip), by 64 concurrent clients, and by bad requests."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest
import torch

from reasondistill.api import train
from reasondistill.cli import main
from reasondistill.serving import background_server, create_app
from reasondistill.tasks import load_task
from reasondistill.teachers import teach

QUESTION = "A coin is heads up. Tom flips the coin. Sam does not flip the coin. Is the coin still heads up?"


class Recorder:
    """ASGI wrapper, outside the server's own code: every request body, and the most requests in
    flight at once."""

    def __init__(self, app):
        self.app, self.bodies, self.in_flight, self.max_in_flight = app, [], 0, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks = []

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.bodies.append(b"".join(chunks))
            return message
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.app(scope, recording_receive, send)
        finally:
            self.in_flight -= 1


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a micro model is fastest on one thread, and much faster on a busy CPU
    run = tmp_path_factory.mktemp("serve") / "pt-student"
    train("post_thinking", "synthetic/coin_flip", run, student="micro", n=48, vocab_size=320, progress=False,
          training={"max_steps": 30, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0})
    app = create_app(run)
    recorder = Recorder(app)
    with background_server(recorder) as url:
        yield {"url": url, "app": app, "recorder": recorder, "name": "pt-student"}
    torch.set_num_threads(threads)


def test_teach_round_trip_against_a_served_student(tmp_path, served):
    rec = served["recorder"]
    rec.bodies.clear()
    rec.max_in_flight = 0
    out = tmp_path / "r.jsonl"
    s = teach("synthetic/coin_flip", f"openai:{served['name']}", out, n=10, base_url=served["url"] + "/v1",
              concurrency=4, max_tokens=16, keep="all", progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    questions = [ex.question for ex in load_task("synthetic/coin_flip", "train", n=10)]
    assert len(rows) == 10 and [r["question"] for r in rows] == questions
    for r in rows:
        assert {"id", "task", "question", "answer", "answer_type", "rationale", "teacher_answer", "teacher",
                "teacher_correct"} <= set(r) and r["teacher"] == "openai:pt-student"
    assert rec.max_in_flight > 1, "teach should keep several requests in flight"
    asked = [json.loads(b)["messages"][-1]["content"] for b in rec.bodies]
    firsts = Counter(a for a in asked if a.endswith("step by step."))
    assert sorted(firsts) == sorted(f"Q: {q}\nA: Let's think step by step." for q in questions)
    assert set(firsts.values()) == {1} and len(asked) == s["calls"]["new"] == s["calls"]["requests"]
    assert len(load_task(str(out), "all")) == 10  # the output is train --data material


def _valid(kind: str, r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    if kind == "stream":
        lines = [line for line in r.text.splitlines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    body = r.json()
    assert body["usage"]["completion_tokens"] >= 1 and body["choices"][0]["finish_reason"] in ("stop", "length")
    return body["choices"][0]["message"]["content"] if kind == "chat" else body["choices"][0]["text"]


def test_64_concurrent_clients(served):
    app = served["app"]
    errors_before = app.state.student.counters["errors"]
    kinds = ["completion", "chat", "answer_only", "stream"] * 16

    async def client(i: int, kind: str, http: httpx.AsyncClient) -> tuple[str, str]:
        q = QUESTION.replace("Tom", ["Tom", "Anna", "Leo", "Mia"][i % 4])
        if kind == "completion":
            r = await http.post("/v1/completions", json={"model": served["name"], "prompt": q, "max_tokens": 12})
        elif kind == "answer_only":
            r = await http.post("/v1/completions", json={"prompt": q, "max_tokens": 12, "answer_only": True})
        else:
            r = await http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": q}],
                                                              "max_tokens": 12, "stream": kind == "stream"})
        return kind, _valid(kind, r)

    async def run():
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=served["url"], timeout=60, limits=limits) as http:
            return await asyncio.gather(*(client(i, k, http) for i, k in enumerate(kinds)))

    results = asyncio.run(run())
    assert len(results) == 64
    assert all(text.strip() for kind, text in results if kind != "stream")
    assert app.state.student.counters["errors"] == errors_before
    assert app.state.student.scheduler.stats["largest_batch"] > 1, "concurrent requests should be batched"


def test_answer_only_stops_right_after_the_answer(served):
    with httpx.Client(base_url=served["url"], timeout=60) as http:
        def ask(**extra):
            r = http.post("/v1/completions", json={"prompt": QUESTION, "max_tokens": 24, **extra})
            assert r.status_code == 200, r.text
            return r.json()
        full, short, stopped = ask(), ask(answer_only=True), ask(stop=["\n"])
        stream = http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": QUESTION}],
                                                         "max_tokens": 24, "stream": True})
    answer_line = full["choices"][0]["text"].split("\n")[0]
    assert answer_line.strip() in ("yes", "no"), full
    assert short["choices"][0]["text"] == stopped["choices"][0]["text"] == answer_line
    assert short["choices"][0]["finish_reason"] == "stop"
    assert short["usage"]["completion_tokens"] < full["usage"]["completion_tokens"]
    assert short["usage"]["completion_tokens"] <= 4  # the answer word(s) and the newline, nothing more
    assert _valid("stream", stream) == full["choices"][0]["text"].lstrip()  # same greedy text, streamed


@pytest.mark.parametrize("path,body,status,needle", [
    ("/v1/completions", {"prompt": "q", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"prompt": "q", "temperature": -1}, 400, "temperature"),
    ("/v1/completions", {"prompt": [1, 2, 3]}, 400, "prompt"),
    ("/v1/completions", {"model": "gpt-4", "prompt": "q"}, 404, "pt-student"),
    ("/v1/completions", {"prompt": "q", "max_tokens": 10 ** 6}, 400, "limit"),
    ("/v1/chat/completions", {"messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "hi"}]}, 400, "user message"),
    ("/v1/chat/completions", "{not json", 400, "JSON"),
    ("/v1/nothing", {}, 404, "Not Found"),
])
def test_bad_requests_get_4xx_json(served, path, body, status, needle):
    content = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(served["url"] + path, content=content, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == status
    assert needle in r.json()["error"]["message"]
    assert httpx.get(served["url"] + "/health", timeout=30).json() == {"status": "ok"}


def test_models_endpoint_and_serve_errors(served, tmp_path, capsys):
    models = httpx.get(served["url"] + "/v1/models", timeout=30).json()
    assert models["data"][0]["id"] == "pt-student" and models["data"][0]["answer_first"] is True
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert main(["serve", str(tmp_path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 2 and "missing" in err[0] and "run folder" in err[1]
