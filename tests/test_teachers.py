"""Teachers: prompting, filtering, the call store, faults and retries, resume after SIGKILL, hf and
scripted teachers, and the ``teach``/``filter`` commands. Network only on 127.0.0.1, against
servers these tests start and stop themselves."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from reasondistill.cli import main
from reasondistill.errors import UserError
from reasondistill.rationales import (FewShotCoT, ZeroShotCoT, dedup_records, keep_records, make_record,
                                      task_stats)
from reasondistill.serving import background_server
from reasondistill.tasks import Example, load_task
from reasondistill.teachers import Call, Completion, Teacher, get_teacher, teach
from reasondistill.teachers.store import CallStore


# ----- an OpenAI-compatible stub with scripted faults ----------------------------------------------

class Stub:
    """Answers chat completions; counts every call it receives. Faults by model name (badkey: 401,
    nomodel: 404, down: 503 forever) or prompt word (flaky: 429 with Retry-After, then 500, then
    ok; hang: first attempt outlasts the client's timeout)."""

    RETRY_AFTER = 0.3

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.delay = 0.0
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.chat)

    def reset(self, delay: float = 0.0) -> None:
        self.calls.clear()
        self.delay = delay

    def prompts(self) -> Counter:
        return Counter(p for p, _, _ in self.calls)

    async def chat(self, request: Request):
        body = await request.json()
        prompt, model = body["messages"][-1]["content"], body["model"]
        self.calls.append((prompt, model, time.monotonic()))
        attempt = sum(1 for p, _, _ in self.calls if p == prompt)
        if model == "badkey":
            return JSONResponse({"error": {"message": "Incorrect API key provided"}}, status_code=401)
        if model == "nomodel":
            return JSONResponse({"error": {"message": "The model `nomodel` does not exist"}}, status_code=404)
        if model == "down":
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        if "flaky" in prompt and attempt == 1:
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429,
                                headers={"Retry-After": str(self.RETRY_AFTER)})
        if "flaky" in prompt and attempt == 2:
            return JSONResponse({"error": {"message": "oops"}}, status_code=500)
        if "hang" in prompt and attempt == 1:
            await asyncio.sleep(2.5)
        await asyncio.sleep(self.delay)
        text = "The coin is flipped once, so it ends tails up." if prompt.endswith("step by step.") else " No."
        return {"id": "stub", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.fixture(scope="module")
def stub():
    s = Stub()
    with background_server(s.app) as url:
        s.url = url + "/v1"
        yield s


def counts_of(row: dict) -> dict:
    """A statistics row without its token columns."""
    return {k: row[k] for k in ("asked", "answered", "correct", "truncated", "kept")}


def coin_file(path: Path, questions: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"A coin is heads up. {q}", "answer": "no"}) + "\n"
                            for i, q in enumerate(questions)))
    return path


# ----- prompting, records, filtering ---------------------------------------------------------------

def test_zero_shot_two_stage_prompts_by_answer_type():
    p = ZeroShotCoT(max_tokens=64)
    ex = Example("a", "Which is red?", "B", "choice", choices={"A": "sky", "B": "apple", "C": "sea"})
    first = p.reasoning(ex, 0.0)
    assert first.prompt == "Q: Which is red?\nAnswer Choices: (A) sky (B) apple (C) sea\nA: Let's think step by step."
    second = p.answering(ex, first.prompt, "Apples are red. ")
    assert second.prompt.endswith("step by step. Apples are red.\nTherefore, among A through C, the answer is")
    assert second.temperature == 0.0 and first.max_tokens == 64
    assert p.parse(ex, "Apples are red.", " (B).")[0] == "B"
    num = Example("b", "2+2?", "4", "number")
    assert p.answering(num, "x", "r").prompt.endswith("the answer (arabic numerals) is")
    assert p.parse(num, "r", " $4.00")[0] == "4"
    assert p.parse(num, "r", " I am not sure")[0] is None


def test_few_shot_from_a_file(shared_data):
    p = FewShotCoT.from_file(shared_data / "zero-shot-cot" / "coin_flip.jsonl", k=2)
    ex = Example("x", "A coin is heads up. Tom flips the coin. Is the coin still heads up?", "no", "yesno")
    stage = p.reasoning(ex, 0.0)
    assert stage.prompt.count("Q: ") == 3 and stage.prompt.count("The answer is ") == 2
    assert stage.prompt.endswith("Is the coin still heads up?\nA:") and stage.kind == "rationale+answer"
    assert p.parse(ex, "Tom flips it. The answer is no.", None)[0] == "no"
    with pytest.raises(UserError, match="shots"):
        FewShotCoT.from_file(shared_data / "zero-shot-cot" / "coin_flip.jsonl", k=0)


def test_filter_dedup_and_stats():
    ex = Example("q", "Is it?", "yes", "yesno", task="t")
    recs = [make_record(ex, "Because.", "yes", "x", sample=0, samples=4),
            make_record(ex, "because. ", "yes", "x", sample=1, samples=4),   # same rationale, spacing aside
            make_record(ex, "No way.", "no", "x", sample=2, samples=4),
            make_record(ex, "Hm.", None, "x", sample=3, samples=4)]
    assert [r["id"] for r in recs] == ["q#s0", "q#s1", "q#s2", "q#s3"]
    assert [r["teacher_correct"] for r in recs] == [True, True, False, None]
    kept = dedup_records(keep_records(recs, "correct"))
    assert [r["id"] for r in kept] == ["q#s0"]
    assert len(keep_records(recs, "all")) == 4
    assert task_stats(recs, kept)["t"] == {"asked": 4, "answered": 3, "correct": 2, "truncated": 0, "kept": 1}
    with pytest.raises(UserError, match="--keep"):
        keep_records(recs, "best")


# ----- scripted and local teachers -----------------------------------------------------------------

def test_scripted_teach_file_trains_and_reruns_from_the_store(tmp_path):
    from reasondistill.api import train
    out = tmp_path / "r.jsonl"
    s = teach("synthetic/last_letters", "scripted", out, n=12, hallucination=0.25, progress=False)
    assert counts_of(s["stats"]["total"]) == {"asked": 12, "answered": 12, "correct": 12, "truncated": 0, "kept": 12}
    assert s["calls"]["new"] == 24 and s["calls"]["from_store"] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    gold = load_task("synthetic/last_letters", "train", n=12, hallucination=0.25)
    assert [r["rationale"] for r in rows] == [ex.rationale for ex in gold]  # hallucinations kept: same answer
    assert all(r["teacher"] == "scripted" and r["teacher_answer_line"].startswith("Therefore") for r in rows)
    loaded = load_task(str(out), "all")
    assert len(loaded) == 12 and all(ex.rationale and ex.teacher_correct for ex in loaded)
    again = teach("synthetic/last_letters", "scripted", out, n=12, hallucination=0.25, progress=False)
    assert again["calls"]["new"] == 0 and again["calls"]["from_store"] == 24
    record = train("post_thinking", str(out), tmp_path / "run", student="micro", split="all", vocab_size=200,
                   training={"max_steps": 2, "batch_size": 4, "checkpoint_every": 0}, progress=False)
    assert record["n_train"] == 12


class WrongSometimes(Teacher):
    """Answers 'no' to everything and repeats its rationale for samples 0 and 1."""

    kind = "test"

    def __init__(self):
        super().__init__("test:wrong", "wrong")

    async def complete(self, call: Call) -> Completion:
        self.requests += 1
        if call.kind == "answer":
            return Completion(" no")
        return Completion("Same words." if call.sample < 2 else f"Other words {call.sample}.")


def test_samples_filter_and_dedup_through_teach(tmp_path):
    out = tmp_path / "r.jsonl"
    s = teach("synthetic/coin_flip", WrongSometimes(), out, n=6, samples=3, progress=False)
    gold_no = sum(ex.answer == "no" for ex in load_task("synthetic/coin_flip", "train", n=6))
    total = s["stats"]["total"]
    assert counts_of(total) == {"asked": 18, "answered": 18, "correct": 3 * gold_no, "truncated": 0, "kept": 2 * gold_no}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["id"].rsplit("#", 1)[1] for r in rows} == {"s0", "s2"} and s["temperature"] == 0.7
    assert all(r["source_id"] == r["id"].rsplit("#", 1)[0] for r in rows)
    with pytest.raises(UserError, match="temperature"):
        teach("synthetic/coin_flip", WrongSometimes(), out, n=2, samples=2, temperature=0.0, progress=False)


def test_hf_teacher_batches_a_local_model(tmp_path):
    from reasondistill.models import build_tiny_student
    folder = tmp_path / "teacher"
    model, tok = build_tiny_student("micro", ["Q: A coin is heads up. Let's think step by step. Therefore yes no"],
                                    vocab_size=120)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    teacher = get_teacher(f"hf:{folder}", concurrency=4)
    assert teacher.api == "completions"  # no chat template: raw continuation
    s = teach("synthetic/coin_flip", teacher, tmp_path / "r.jsonl", n=8, max_tokens=6, concurrency=4,
              keep="all", progress=False)
    assert teacher.requests == s["calls"]["new"] <= 16 and s["stats"]["total"]["asked"] == 8
    assert teacher.scheduler.stats["largest_batch"] >= 2, "concurrent calls should share a generate() batch"
    again = teach("synthetic/coin_flip", teacher, tmp_path / "r.jsonl", n=8, max_tokens=6, concurrency=4,
                  keep="all", progress=False)
    assert again["calls"]["new"] == 0 and again["stats"] == s["stats"]


def test_teach_save_logits_stores_top_k_beside_the_rationales(tmp_path, capsys):
    """`teach --teacher hf:... --save-logits K` writes the rationale file and its teacher logits."""
    from reasondistill.cli import main
    from reasondistill.kd import TeacherLogits, logits_path
    from reasondistill.models import build_tiny_student
    folder = tmp_path / "teacher"
    model, tok = build_tiny_student("micro", ["Q: A coin is heads up. Let's think step by step. Therefore yes no"],
                                    vocab_size=120)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    out = tmp_path / "r.jsonl"
    assert main(["teach", "--data", "synthetic/coin_flip", "--n", "4", "--teacher", f"hf:{folder}", "--out", str(out),
                 "--keep", "all", "--max-tokens", "6", "--save-logits", "5", "--quiet"]) == 0
    assert "top-5 teacher log-probabilities" in capsys.readouterr().out
    stored = TeacherLogits(logits_path(out))
    assert stored.ids.shape[1] == 5 and stored.logprobs.shape == stored.ids.shape
    assert len(stored.index) >= 4  # every kept rationale's training sequence(s)


# ----- the openai teacher: faults, clear errors, resume --------------------------------------------

def test_retries_on_429_500_and_timeouts(tmp_path, stub):
    stub.reset()
    data = coin_file(tmp_path / "faults.jsonl", ["Tom flips.", "flaky Sam flips.", "hang Ben flips.", "Max flips."])
    teacher = get_teacher("openai:stub", base_url=stub.url, timeout=1.0, backoff=0.01)
    s = teach(str(data), teacher, tmp_path / "r.jsonl", concurrency=4, progress=False)
    assert counts_of(s["stats"]["total"]) == {"asked": 4, "answered": 4, "correct": 4, "truncated": 0, "kept": 4}
    counts = stub.prompts()
    assert len(counts) == 8 and sum(counts.values()) == 14  # 2 prompts x (1 + 1 + 3 + 2) attempts
    assert all(n == (3 if "flaky" in p else 2 if "hang" in p else 1) for p, n in counts.items())
    assert teacher.retries == 6 and teacher.failures == {"429": 2, "500": 2, "timeout": 2}
    for prompt in (p for p in counts if "flaky" in p):  # Retry-After honoured, not the 10 ms backoff
        times = [t for p, _, t in stub.calls if p == prompt]
        assert times[1] - times[0] >= Stub.RETRY_AFTER * 0.95


@pytest.mark.parametrize("model,needle", [("badkey", "HTTP 401"), ("nomodel", "HTTP 404")])
def test_client_errors_fail_fast(tmp_path, stub, model, needle):
    stub.reset()
    data = coin_file(tmp_path / "d.jsonl", ["Tom flips.", "Sam flips."])
    with pytest.raises(UserError, match=needle):
        teach(str(data), f"openai:{model}", tmp_path / "r.jsonl", base_url=stub.url, concurrency=1, progress=False)
    assert len(stub.calls) == 1 and not (tmp_path / "r.jsonl").exists()


def test_gives_up_after_max_retries_with_a_clear_line(tmp_path, stub, capsys):
    stub.reset()
    data = coin_file(tmp_path / "d.jsonl", ["Tom flips."])
    code = main(["teach", "--data", str(data), "--teacher", "openai:down", "--base-url", stub.url, "--out",
                 str(tmp_path / "r.jsonl"), "--max-retries", "2", "--backoff", "0.01", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "failed 3 times (last: 503)" in err[0] and "again" in err[0]
    assert len(stub.calls) == 3


def test_killed_teach_resumes_without_repeated_or_lost_calls(tmp_path, stub):
    stub.reset(delay=0.05)
    data = coin_file(tmp_path / "d.jsonl", [f"Person {i} flips." for i in range(16)])
    out, store = tmp_path / "r.jsonl", tmp_path / "r.calls.sqlite"
    args = ["--data", str(data), "--teacher", "openai:stub", "--base-url", stub.url, "--out", str(out),
            "--concurrency", "2", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "reasondistill", "teach", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OPENAI_API_KEY": "unused"})
    deadline = time.monotonic() + 120
    while len(stub.calls) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(stub.calls) >= 10 and not out.exists(), "the run should die half way"
    first_run = stub.prompts()
    with CallStore(store) as calls:
        stored = {r["prompt"] for r in calls.requests()}
    assert 8 <= len(stored) < 32

    s = teach(str(data), "openai:stub", out, base_url=stub.url, concurrency=2, progress=False)
    total = stub.prompts()
    second_run = total - first_run
    lost_in_flight = set(first_run) - stored  # sent, but the kill came before the answer was stored
    assert s["stats"]["total"]["kept"] == 16 and len(out.read_text().splitlines()) == 16
    assert s["calls"] == {**s["calls"], "needed": 32, "from_store": len(stored), "new": 32 - len(stored)}
    assert not stored & set(second_run), "a finished call was asked again"
    assert set(second_run) == set(total) - stored and max(second_run.values()) == 1
    assert len(total) == 32 and len(lost_in_flight) <= 2
    assert sum(total.values()) == 32 + len(lost_in_flight)
    print(f"resume: {len(stored)} calls stored before SIGKILL, {len(lost_in_flight)} in flight, "
          f"{sum(second_run.values())} asked after restart, 0 repeated")


# ----- the command line ----------------------------------------------------------------------------

def _one_line_error(capsys, *argv):
    code = main(list(argv))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_cli_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "r.jsonl")
    assert "--teacher" in _one_line_error(capsys, "teach", "--data", "synthetic/coin_flip", "--out", out)
    assert "gpt:4" in _one_line_error(capsys, "teach", "--data", "synthetic/coin_flip", "--teacher", "gpt:4",
                                      "--out", out)
    assert "temperature" in _one_line_error(capsys, "teach", "--data", "synthetic/coin_flip", "--teacher",
                                            "scripted", "--samples", "2", "--temperature", "0", "--out", out)
    assert "--base-url" in _one_line_error(capsys, "teach", "--data", "synthetic/coin_flip", "--teacher", "scripted",
                                           "--base-url", "http://127.0.0.1:9/v1", "--out", out)
    assert "JSON" in _one_line_error(capsys, "teach", "--data", "synthetic/coin_flip", "--teacher", "openai:m",
                                     "--base-url", "http://127.0.0.1:9/v1", "--extra-body", "{oops", "--out", out)
    assert "folder" in _one_line_error(capsys, "teach", "--data", "synthetic/coin_flip", "--teacher", "scripted",
                                       "--out", str(tmp_path))


def test_filter_command_on_real_teacher_data(tmp_path, shared_data, capsys):
    out = tmp_path / "kept.jsonl"
    assert main(["filter", "--data", str(shared_data / "zero-shot-cot" / "coin_flip.jsonl"), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 457 and all(r["teacher_correct"] is True for r in rows)  # 91.4% of 500
    assert "457" in capsys.readouterr().out
    assert len(load_task(str(out), "all")) == 457


def test_a_corrupt_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "r.calls.sqlite"
    bad.write_bytes(b"this is not a database, just some bytes " * 50)
    with pytest.raises(UserError, match="not a reasondistill call store"):
        CallStore(bad)
