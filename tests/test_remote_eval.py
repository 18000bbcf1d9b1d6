"""``eval --server``: a student behind an OpenAI-compatible server scores as it does locally."""

from __future__ import annotations

import json

import pytest
import torch

from reasondistill import api
from reasondistill.cli import main
from reasondistill.errors import UserError
from reasondistill.remote import evaluate_server
from reasondistill.serving import background_server, create_app


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("remote") / "pt"
    api.train("post_thinking", "synthetic/coin_flip", run, student="micro", n=48, vocab_size=320, progress=False,
              training={"max_steps": 30, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0})
    with background_server(create_app(run, name="pt")) as url:
        yield run, url
    torch.set_num_threads(threads)


def _answers(folder) -> list:
    return [json.loads(line)["answer"] for line in (folder / "predictions.jsonl").read_text().splitlines()]


def test_served_student_scores_as_local_eval(served_run, tmp_path):
    run, url = served_run
    local = api.evaluate(run, "synthetic/coin_flip", n=24, seed=7, out=tmp_path / "local", explain=False,
                         similarity=False, progress=False)
    remote = evaluate_server(url, "synthetic/coin_flip", served_model="pt", n=24, seed=7, out=tmp_path / "remote",
                             explain=False, concurrency=4)
    assert remote["n"] == local["n"] == 24 and remote["method"] == "post_thinking"
    assert remote["accuracy"] == local["accuracy"]
    assert _answers(tmp_path / "remote") == _answers(tmp_path / "local")
    assert 0 < remote["ms_to_answer"] and remote["tokens_to_answer"] >= 1
    assert json.loads((tmp_path / "remote" / "metrics.json").read_text())["served_model"] == "pt"


def test_streamed_rationale_is_timed_after_the_answer(served_run, tmp_path):
    run, url = served_run
    metrics = evaluate_server(url + "/v1", "synthetic/coin_flip", model=run, n=6, seed=7, out=tmp_path / "r",
                              concurrency=2)
    assert metrics["tokens_counted_by"] == "tokenizer"
    # the answer line arrives before the rationale is decoded: its clock stops first
    assert metrics["ms_total"] > metrics["ms_to_answer"] and metrics["tokens_total"] > metrics["tokens_to_answer"]
    rows = [json.loads(line) for line in (tmp_path / "r" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["answer"] in ("yes", "no") for r in rows)
    api.evaluate(run, "synthetic/coin_flip", n=6, seed=7, out=tmp_path / "local", similarity=False, progress=False)
    local = [json.loads(line) for line in (tmp_path / "local" / "predictions.jsonl").read_text().splitlines()]
    assert [r["text"].strip() for r in rows] == [r["text"].strip() for r in local]  # same prompt, same words


def test_eval_server_cli_and_mistakes(served_run, tmp_path, capsys):
    run, url = served_run
    assert main(["eval", "--server", url, "--data", "synthetic/coin_flip", "--n", "4", "--out", str(tmp_path / "c"),
                 "--no-explain"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4
    with pytest.raises(UserError, match="does not serve 'other'; it serves: pt"):
        evaluate_server(url, "synthetic/coin_flip", served_model="other", n=2, out=tmp_path / "x")
    with pytest.raises(UserError, match="cannot reach the server"):
        evaluate_server("http://127.0.0.1:9", "synthetic/coin_flip", n=2, out=tmp_path / "x")
