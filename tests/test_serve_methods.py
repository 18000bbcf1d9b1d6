"""Every method's run folder answers /v1/chat/completions through ``serve``, with the text its own
``answer`` gives in eval (the server decodes the method's rows, so routed and soft-thought students
are served like the rest). Micro students, a few steps each: the test is about the path, not skill."""

from __future__ import annotations

import httpx
import pytest
import torch

from reasondistill import api
from reasondistill.serving import background_server, create_app
from reasondistill.tasks import Example, extract_answer

TASK = "synthetic/coin_flip"
QUESTION = "A coin is heads up. Mia flips the coin. Leo flips the coin. Is the coin still heads up?"
STEPS = {"max_steps": 8, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0}
OPTIONS = {  # the cheapest settings of each method's own stages
    "kpod": {"mask_steps": 5, "answer_model_steps": 5},
    "adaptive": {"perception_steps": 5, "perception_examples": 8},
    "pst": {},
}
PLAIN = ["answer_only", "pre_thinking", "prefix", "post_thinking", "pst", "kpod", "adaptive"]
METHODS = PLAIN + ["softcot", "semcot"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("serve-methods")
    for name in PLAIN:
        api.train(name, TASK, root / name, student="micro", n=32, vocab_size=320, training=STEPS,
                  method_options=OPTIONS.get(name), progress=False)
    # Soft-thought methods freeze a trained main model and read a second one: reuse the runs above.
    api.train("softcot", TASK, root / "softcot", student=str(root / "pre_thinking"), n=32, training=STEPS,
              method_options={"assistant": str(root / "answer_only")}, progress=False)
    api.train("semcot", TASK, root / "semcot", student=str(root / "answer_only"), n=32, training=STEPS,
              method_options={"assistant": str(root / "answer_only"), "judge_steps": 5}, progress=False)
    yield root
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_answers_chat_through_serve(runs, name):
    method, model, tokenizer, record = api.load_run(runs / name)
    example = Example(id="request", question=QUESTION, answer="", answer_type=record["answer_type"])
    [local] = method.answer(model, tokenizer, [example], max_new_tokens=24)
    with background_server(create_app(runs / name)) as url:
        r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 24})
        short = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 24, "answer_only": True})
    assert r.status_code == 200 and short.status_code == 200, (r.text, short.text)
    body = r.json()
    assert body["choices"][0]["message"]["content"] == local.text.lstrip()
    assert body["usage"]["completion_tokens"] == local.tokens_total
    answer = short.json()["choices"][0]["message"]["content"]
    if method.answer_first or local.extras.get("answer_first"):
        assert short.json()["usage"]["completion_tokens"] == local.tokens_to_answer  # stopped at the answer line
    assert extract_answer(answer.strip(), example.answer_type, None) == local.answer
