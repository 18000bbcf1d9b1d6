"""``teach --batch-api`` against a loopback fake of OpenAI's files and batches endpoints: rounds,
resubmission of failed and expired rows only, and a run killed mid-poll that resumes the same
batch without submitting again."""

from __future__ import annotations

import email.parser
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from fastapi import Request
from fastapi.responses import PlainTextResponse

from reasondistill.serving import background_server
from reasondistill.teachers import teach
from reasondistill.teachers.store import CallStore
from test_reasoning_teachers import QUESTIONS, ThinkServer, math_file, rows, trace_for


class FakeBatchAPI(ThinkServer):
    """Files and batches as OpenAI serves them. A batch finishes after ``polls_needed`` status
    checks (never while ``hold`` is set); stage-one rows whose prompt holds a word in ``fail_once`` answer
    500 the first time; ``expire_once`` makes the first batch expire with only half its rows run."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, str] = {}
        self.batches: dict[str, dict] = {}
        self.uploads = self.creates = self.polls = 0
        self.polls_needed, self.hold, self.fail_once, self.expire_once = 2, False, (), False
        self.failed: set[str] = set()
        self.ids = itertools.count()
        self.app.post("/v1/files")(self.upload)
        self.app.get("/v1/files/{file_id}/content")(self.content)
        self.app.post("/v1/batches")(self.create)
        self.app.get("/v1/batches/{batch_id}")(self.retrieve)

    async def upload(self, request: Request):
        raw = await request.body()
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        message = email.parser.BytesParser().parsebytes(head + raw)
        parts = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                 for p in message.get_payload()}
        self.uploads += 1
        file_id = f"file-{next(self.ids)}"
        self.files[file_id] = parts["file"].decode()
        return {"id": file_id, "object": "file", "bytes": len(parts["file"]), "created_at": 0,
                "filename": "batch.jsonl", "purpose": parts["purpose"].decode(), "status": "processed"}

    async def content(self, file_id: str):
        return PlainTextResponse(self.files[file_id])

    def _batch(self, b: dict) -> dict:
        return {"id": b["id"], "object": "batch", "endpoint": b["endpoint"], "input_file_id": b["input"],
                "completion_window": "24h", "created_at": 0, "status": b["status"],
                "output_file_id": b.get("output"), "error_file_id": b.get("errors"),
                "request_counts": {"total": len(b["rows"]), "completed": b.get("done", 0), "failed": b.get("bad", 0)}}

    async def create(self, request: Request):
        body = await request.json()
        self.creates += 1
        rows_in = [json.loads(line) for line in self.files[body["input_file_id"]].splitlines() if line.strip()]
        b = {"id": f"batch_{next(self.ids)}", "endpoint": body["endpoint"], "input": body["input_file_id"],
             "rows": rows_in, "status": "in_progress", "polls": 0}
        self.batches[b["id"]] = b
        return self._batch(b)

    async def retrieve(self, batch_id: str):
        b = self.batches[batch_id]
        self.polls += 1
        b["polls"] += 1
        if b["status"] == "in_progress" and not self.hold and b["polls"] >= self.polls_needed:
            self._run(b)
        return self._batch(b)

    def _run(self, b: dict) -> None:
        expire = self.expire_once
        self.expire_once = False
        out, errors = [], []
        for i, row in enumerate(b["rows"]):
            if expire and i % 2:
                continue
            body = row["body"]
            prompt = body["messages"][-1]["content"]
            self.calls.append((body["model"], prompt))
            if any(w in prompt for w in self.fail_once) and prompt.endswith("by step.") and prompt not in self.failed:
                self.failed.add(prompt)
                errors.append({"id": f"r{i}", "custom_id": row["custom_id"], "error": None,
                               "response": {"status_code": 500, "body": {"error": {"message": "oops"}}}})
                continue
            message, finish, usage = self.answer(body["model"], prompt)
            out.append({"id": f"r{i}", "custom_id": row["custom_id"], "error": None, "response": {
                "status_code": 200, "request_id": f"q{i}",
                "body": {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "usage": usage,
                         "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                      "finish_reason": finish}]}}})
        for name, lines in (("output", out), ("errors", errors)):
            if lines:
                file_id = f"file-{next(self.ids)}"
                self.files[file_id] = "".join(json.dumps(x) + "\n" for x in lines)
                b[name] = file_id
        b.update(status="expired" if expire else "completed", done=len(out), bad=len(errors))

    def row_prompts(self, n: int) -> list[str]:
        batch = list(self.batches.values())[n]
        return [r["body"]["messages"][-1]["content"] for r in batch["rows"]]


@pytest.fixture
def fake():
    f = FakeBatchAPI()
    with background_server(f.app) as url:
        f.url = url + "/v1"
        yield f


def test_one_round_for_a_reasoning_teacher(tmp_path, fake):
    out = tmp_path / "r.jsonl"
    s = teach(str(math_file(tmp_path / "m.jsonl")), "openai:reasoning_content", out, base_url=fake.url,
              batch_api=True, batch_poll=0.01, progress=False)
    assert fake.uploads == fake.creates == 1 and len(fake.row_prompts(0)) == len(QUESTIONS)
    assert [r["rationale"] for r in rows(out)] == [trace_for(q) for q in list(QUESTIONS)[:3]]
    assert s["stats"]["math"]["truncated"] == 1 and s["batches"]["submitted"] == ["batch_1"]
    again = teach(str(math_file(tmp_path / "m.jsonl")), "openai:reasoning_content", out, base_url=fake.url,
                  batch_api=True, batch_poll=0.01, progress=False)
    assert fake.creates == 1 and again["calls"]["new"] == 0 and again["calls"]["from_store"] == 5


def test_plain_teacher_takes_two_rounds_and_failed_rows_alone_are_resubmitted(tmp_path, fake):
    fake.fail_once = ("half of 9", "Share 7")
    out = tmp_path / "r.jsonl"
    s = teach(str(math_file(tmp_path / "m.jsonl")), "openai:plain", out, base_url=fake.url,
              batch_api=True, batch_poll=0.01, progress=False)
    reasoning_rows = [[p for p in fake.row_prompts(i) if p.endswith("step by step.")] for i in range(fake.creates)]
    assert fake.creates == 3 and len(reasoning_rows[0]) == 5  # stage one; then retries + stage two; stage two
    assert sorted(q.split("\n")[0] for q in reasoning_rows[1]) == ["Q: Share 7 apples between 2 people. How many each?",
                                                                   "Q: What is half of 9?"]
    assert reasoning_rows[2] == [] and len(fake.row_prompts(1)) == 2 + 3 and len(fake.row_prompts(2)) == 2
    assert s["batches"]["failed_rows"] == 2 and s["stats"]["math"]["correct"] == 3
    assert len(rows(out)) == 3 and s["calls"]["new"] == 10


def test_an_expired_batch_resubmits_only_the_rows_it_never_ran(tmp_path, fake):
    fake.expire_once = True
    teach(str(math_file(tmp_path / "m.jsonl")), "openai:reasoning", tmp_path / "r.jsonl", base_url=fake.url,
          batch_api=True, batch_poll=0.01, progress=False)
    first, second = fake.row_prompts(0), fake.row_prompts(1)
    assert second == first[1::2] and fake.creates == 2
    assert len(rows(tmp_path / "r.jsonl")) == 3


def test_killed_mid_poll_resumes_the_same_batch(tmp_path, fake):
    fake.hold = True
    data, out = math_file(tmp_path / "m.jsonl"), tmp_path / "r.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "reasondistill", "teach", "--data", str(data), "--teacher",
                             "openai:reasoning", "--base-url", fake.url, "--out", str(out), "--batch-api",
                             "--batch-poll", "0.05", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OPENAI_API_KEY": "unused"})
    deadline = time.monotonic() + 120
    while fake.polls < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert fake.creates == 1 and fake.polls >= 3 and not out.exists(), "the run should die while polling"
    with CallStore(tmp_path / "r.calls.sqlite") as store:
        assert store.open_batch()[0] == "batch_1" and len(store) == 0
    fake.hold = False
    s = teach(str(data), "openai:reasoning", out, base_url=fake.url, batch_api=True, batch_poll=0.01, progress=False)
    assert fake.uploads == fake.creates == 1, "a second batch was submitted"
    assert s["batches"]["resumed"] == "batch_1" and s["batches"]["submitted"] == []
    assert s["calls"]["new"] == 5 and len(rows(out)) == 3
    with CallStore(tmp_path / "r.calls.sqlite") as store:
        assert store.open_batch() is None
