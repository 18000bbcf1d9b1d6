"""Reasoning teachers against loopback servers that answer in each style a real server uses:
``reasoning_content`` (DeepSeek API, vLLM ``--reasoning-parser``), ``reasoning`` (newer vLLM,
OpenRouter), an inline ``<think>...</think>`` (chat and completions), and R1's template form where
only the closing tag is in the text. Also: truncation, the URL-keyed store, the scripted teacher's
key, selection among samples, tokens and cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI, Request

from reasondistill.cli import main
from reasondistill.errors import UserError
from reasondistill.rationales import select_records
from reasondistill.serving import background_server
from reasondistill.tasks import load_task
from reasondistill.teachers import Call, Completion, Teacher, teach
from reasondistill.teachers.reasoning import read_reply

# question -> (gold in the file, the answer the teacher writes in LaTeX)
QUESTIONS = {
    "Share 7 apples between 2 people. How many each?": ("3.5", r"\frac{7}{2}"),
    "What is three quarters as a decimal?": ("0.75", r"\dfrac{3}{4}"),
    "What is 1000 times 12?": ("12000", r"12{,}000"),
    "What is half of 9?": ("4.5", r"\frac{9}{3}"),           # the teacher is wrong: 3
    "A long one: count to a million.": ("1000000", None),      # cut at the token limit
}
STYLES = ("reasoning_content", "reasoning", "think", "r1")


def trace_for(question: str, tag: str = "") -> str:
    return f"Let me think{tag}. {question} Working it out carefully, step by step."


class ThinkServer:
    """An OpenAI-compatible server whose model name picks the answer style; "plain" answers like
    a non-reasoning model (rationale, then the answer stage). Counts every call."""

    def __init__(self, tag: str = "") -> None:
        self.tag, self.calls = tag, []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.chat)
        self.app.post("/v1/completions")(self.completions)

    def answer(self, model: str, prompt: str) -> tuple[dict, str, dict]:
        question = next(q for q in QUESTIONS if q in prompt)
        latex = QUESTIONS[question][1]
        trace = trace_for(question, self.tag)
        usage = {"prompt_tokens": 20, "completion_tokens": 30}
        if model == "plain":
            text = f" The answer is {latex}." if prompt.rstrip().endswith("is") else f"{trace} So it is {latex}."
            return {"content": text}, "stop", usage
        if latex is None:  # ran out of tokens while thinking
            usage["completion_tokens"] = 64
            if model in ("think", "r1"):
                return {"content": ("<think>\n" if model == "think" else "") + trace + " and more"}, "length", usage
            return {"content": "", model: trace + " and more"}, "length", usage
        final = f"The answer is $\\boxed{{{latex}}}$."
        if model == "reasoning_content":
            usage["completion_tokens_details"] = {"reasoning_tokens": 25}
        if model in ("think", "r1"):
            opening = "<think>\n" if model == "think" else ""
            return {"content": f"{opening}{trace}\n</think>\n\n{final}"}, "stop", usage
        return {"content": final, model: trace}, "stop", usage

    async def chat(self, request: Request):
        body = await request.json()
        prompt, model = body["messages"][-1]["content"], body["model"]
        self.calls.append((model, prompt))
        message, finish, usage = self.answer(model, prompt)
        return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
                "usage": usage}

    async def completions(self, request: Request):
        body = await request.json()
        self.calls.append((body["model"], body["prompt"]))
        message, finish, usage = self.answer(body["model"], body["prompt"])
        return {"id": "x", "object": "text_completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "text": message["content"], "finish_reason": finish}], "usage": usage}


@pytest.fixture(scope="module")
def server():
    s = ThinkServer()
    with background_server(s.app) as url:
        s.url = url + "/v1"
        yield s


def math_file(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"m{i}", "task": "math", "question": q, "answer": gold,
                                        "answer_type": "number"}) + "\n"
                            for i, (q, (gold, _)) in enumerate(QUESTIONS.items())))
    return path


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("style,api", [(s, "chat") for s in STYLES] + [("think", "completions")])
def test_each_style_gives_the_trace_in_one_call(tmp_path, server, style, api):
    server.calls.clear()
    out = tmp_path / "r.jsonl"
    s = teach(str(math_file(tmp_path / "m.jsonl")), f"openai:{style}", out, base_url=server.url, api=api,
              max_tokens=64, progress=False)
    assert len(server.calls) == len(QUESTIONS), "one call per question: the response carries the answer"
    kept = rows(out)
    assert [r["question"] for r in kept] == list(QUESTIONS)[:3]  # the wrong one and the cut one dropped
    assert all(r["rationale"] == trace_for(r["question"]) for r in kept), "the rationale is the trace"
    assert [r["teacher_answer"] for r in kept] == ["3.5", "0.75", "12000"]
    assert all(r["finish_reason"] == "stop" and r["truncated"] is False for r in kept)
    math = s["stats"]["math"]
    assert (math["asked"], math["correct"], math["truncated"], math["kept"]) == (5, 3, 1, 3)
    assert math["prompt_tokens"] == 5 * 20 and math["completion_tokens"] == 4 * 30 + 64
    if style == "reasoning_content":
        assert math["thinking_tokens"] == 4 * 25 and all(r["thinking_tokens"] == 25 for r in kept)


def test_keep_all_keeps_the_truncated_one_marked(tmp_path, server):
    out = tmp_path / "r.jsonl"
    teach(str(math_file(tmp_path / "m.jsonl")), "openai:think", out, base_url=server.url, keep="all", progress=False)
    cut = [r for r in rows(out) if r["truncated"]]
    assert len(cut) == 1 and cut[0]["question"].startswith("A long one") and cut[0]["teacher_answer"] is None
    assert cut[0]["rationale"] == trace_for(cut[0]["question"]) + " and more"


def test_plain_models_keep_the_two_stages_and_reasoning_off_reads_traces_as_text(tmp_path, server):
    data = math_file(tmp_path / "m.jsonl")
    server.calls.clear()
    s = teach(str(data), "openai:plain", tmp_path / "p.jsonl", base_url=server.url, progress=False)
    assert len(server.calls) == 2 * len(QUESTIONS) and s["stats"]["math"]["correct"] == 3
    server.calls.clear()
    teach(str(data), "openai:think", tmp_path / "o.jsonl", base_url=server.url, reasoning="off", keep="all",
          progress=False)
    assert len(server.calls) > len(QUESTIONS)  # the second stage again
    assert all(r["rationale"].startswith("<think>") for r in rows(tmp_path / "o.jsonl"))


def test_read_reply_rules():
    assert read_reply(Completion("<think>a</think> B")).trace == "a"
    assert read_reply(Completion("a</think> B")).answer_text == " B"
    unclosed = read_reply(Completion("<think>still going", finish_reason="stop"))
    assert unclosed.truncated and unclosed.answer_text == ""
    assert read_reply(Completion("B", reasoning="r", finish_reason="length")).truncated
    assert read_reply(Completion("", reasoning="r")).truncated  # the parser never saw the end
    plain = read_reply(Completion("just text"))
    assert plain.trace is None and not plain.truncated
    assert read_reply(Completion("<think>a</think> B"), "off").trace is None


def test_another_server_with_the_same_model_name_is_asked_again(tmp_path, server):
    other = ThinkServer(tag=" (other server)")
    data, out = math_file(tmp_path / "m.jsonl"), tmp_path / "r.jsonl"
    first = teach(str(data), "openai:reasoning", out, base_url=server.url, progress=False)
    assert first["calls"]["new"] == 5
    with background_server(other.app) as url:
        second = teach(str(data), "openai:reasoning", out, base_url=url + "/v1", progress=False)
    assert second["calls"]["new"] == 5 and second["calls"]["from_store"] == 0 and len(other.calls) == 5
    assert all("(other server)" in r["rationale"] for r in rows(out)), "another server's answers were reused"
    assert second["calls"]["teacher"] == f"openai:reasoning at {url}/v1"
    assert sum(second["calls"]["other_teachers_in_store"].values()) == 5
    again = teach(str(data), "openai:reasoning", out, base_url=server.url, progress=False)
    assert again["calls"]["new"] == 0 and again["calls"]["from_store"] == 5


def test_scripted_key_follows_the_hallucination_rate(tmp_path):
    out = tmp_path / "r.jsonl"
    clean = teach("synthetic/arithmetic", "scripted", out, n=12, hallucination=0.0, progress=False)
    noisy = teach("synthetic/arithmetic", "scripted", out, n=12, hallucination=1.0, keep="all", progress=False)
    gold = load_task("synthetic/arithmetic", "train", n=12, hallucination=1.0)
    assert clean["calls"]["new"] > 0 and noisy["calls"]["new"] > 0
    assert [r["rationale"] for r in rows(out)] == [ex.rationale for ex in gold]


class Sampler(Teacher):
    """Sample s of question q: a trace of (3 - s) * 10 words for s < 3; sample 0 is wrong."""

    kind = "test"

    def __init__(self):
        super().__init__("test:sampler", "sampler")

    async def complete(self, call: Call) -> Completion:
        self.requests += 1
        gold = call.example.answer
        answer = ("yes" if gold == "no" else "no") if call.sample == 0 else gold
        words = " ".join(["step"] * (10 * (4 - call.sample)) + [str(call.sample)])
        return Completion(f"The answer is {answer}.", reasoning=words, finish_reason="stop",
                          usage={"prompt_tokens": 5, "completion_tokens": 10 * (4 - call.sample) + 3,
                                 "thinking_tokens": 10 * (4 - call.sample)})


@pytest.mark.parametrize("select,samples_kept", [("all-correct", {1, 2, 3}), ("shortest-correct", {3}),
                                                 ("first-correct", {1})])
def test_select_among_samples(tmp_path, select, samples_kept):
    out = tmp_path / "r.jsonl"
    s = teach("synthetic/coin_flip", Sampler(), out, n=4, samples=4, select=select, progress=False)
    assert {r["sample"] for r in rows(out)} == samples_kept and len(rows(out)) == 4 * len(samples_kept)
    assert s["selection"]["all-correct"]["kept"] == 12 and s["selection"]["first-correct"]["kept"] == 4
    assert s["selection"]["shortest-correct"]["mean_rationale_tokens"] == 10


def test_max_rationale_tokens_drops_long_traces(tmp_path):
    out = tmp_path / "r.jsonl"
    teach("synthetic/coin_flip", Sampler(), out, n=3, samples=4, max_rationale_tokens=20, progress=False)
    assert {r["sample"] for r in rows(out)} == {2, 3} and all(r["rationale_tokens"] <= 20 for r in rows(out))
    with pytest.raises(UserError, match="--keep correct"):
        teach("synthetic/coin_flip", Sampler(), out, n=3, samples=4, keep="all", select="first-correct",
              progress=False)


def test_select_records_ties_and_order():
    recs = [{"id": f"q#s{i}", "source_id": "q", "sample": i, "rationale": "x", "rationale_tokens": t}
            for i, t in enumerate([5, 3, 3])]
    assert [r["sample"] for r in select_records(recs, "shortest-correct")] == [1]
    assert [r["sample"] for r in select_records(recs, "first-correct", max_rationale_tokens=4)] == [1]


def test_cli_prints_tokens_cost_and_the_teacher(tmp_path, server, capsys):
    out = tmp_path / "r.jsonl"
    args = ["teach", "--data", str(math_file(tmp_path / "m.jsonl")), "--teacher", "openai:reasoning_content",
            "--base-url", server.url, "--out", str(out), "--price-in", "1", "--price-out", "2", "--quiet"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "think tok" in text and "truncated" in text
    assert f"cost: ${(100 * 1 + 184 * 2) / 1e6:.4f}" in text
    assert f"5 new calls to openai:reasoning_content at {server.url}" in text
    stats = json.loads((tmp_path / "r.stats.json").read_text())
    assert stats["cost"]["total"] == pytest.approx((100 + 184 * 2) / 1e6)


def test_reasoning_flag_is_checked(tmp_path):
    with pytest.raises(UserError, match="--reasoning"):
        teach("synthetic/coin_flip", "scripted", tmp_path / "r.jsonl", n=2, reasoning="maybe", progress=False)
    with pytest.raises(UserError, match="--batch-api"):
        teach("synthetic/coin_flip", "scripted", tmp_path / "r.jsonl", n=2, batch_api=True, progress=False)


class CutOff(Teacher):
    """Writes the right answer, but odd samples stop at the token limit (finish_reason "length")."""

    kind = "test"

    def __init__(self):
        super().__init__("test:cutoff", "cutoff")

    async def complete(self, call: Call) -> Completion:
        return Completion(f"The answer is {call.example.answer}. And also", reasoning=f"Trace {call.sample}.",
                          finish_reason="length" if call.sample % 2 else "stop")


def test_truncated_ones_are_dropped_even_when_their_answer_is_right(tmp_path):
    out = tmp_path / "r.jsonl"
    s = teach("synthetic/coin_flip", CutOff(), out, n=3, samples=2, progress=False)
    total = s["stats"]["total"]
    assert (total["correct"], total["truncated"], total["kept"]) == (6, 3, 3)
    assert {r["sample"] for r in rows(out)} == {0}
    teach("synthetic/coin_flip", CutOff(), out, n=3, samples=2, keep="all", progress=False)
    assert sorted(r["truncated"] for r in rows(out)) == [False] * 3 + [True] * 3
