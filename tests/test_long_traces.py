"""The scripted teacher's long (reasoning-model) style, its task spec, and digit-level tokenizers."""

from __future__ import annotations

import json
import re
from statistics import mean

import pytest

from reasondistill.cli import main
from reasondistill.errors import UserError
from reasondistill.models import build_tiny_student, train_tokenizer
from reasondistill.report.grid import cells, load_config, task_slug
from reasondistill.tasks import SYNTHETIC_TASKS, generate, load_task, parse_spec, rationale_answer, with_style
from reasondistill.tasks.long_traces import trace_tokens

TASKS = sorted(SYNTHETIC_TASKS)


def _last_line_claim(e) -> str | None:
    return rationale_answer(e, e.rationale.splitlines()[-1])


@pytest.mark.parametrize("task", TASKS)
def test_trace_lengths_follow_the_knob(task):
    means = []
    for tokens in (200, 600, 2000):
        lengths = [trace_tokens(e.rationale) for e in generate(task, 40, seed=0, style="long", tokens=tokens,
                                                               hallucination=0.4)]
        assert min(lengths) >= 0.95 * tokens
        assert mean(lengths) <= 1.15 * tokens
        means.append(mean(lengths))
    assert means == sorted(means) and means[-1] > 5 * means[0]


@pytest.mark.parametrize("task", TASKS)
def test_clean_trace_explores_checks_and_concludes_gold_on_its_final_line(task):
    examples = generate(task, 60, seed=2, style="long", tokens=400)
    for e in examples:
        lines = e.rationale.splitlines()
        assert len(lines) >= 4 and not e.meta["hallucinated"]
        assert _last_line_claim(e) == e.answer  # the final line carries the conclusion...
        assert rationale_answer(e, e.rationale) == e.answer  # ...and is what the whole trace argues for
        assert "answer" not in e.rationale.lower()  # methods add the answer line themselves
        assert e.meta["style"] == "long" and e.meta["thinking_tokens"] == trace_tokens(e.rationale)
    text = "\n".join(e.rationale for e in examples)
    assert "let me re-check" in text.lower() and "wait" in text.lower()  # detours and backtracking
    assert "once more from the start" in text and "Yes" in text  # second passes and intermediate checks


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("hallucination", [0.2, 0.4, 1.0])
def test_hallucination_rate_respected_and_hallucinated_traces_conclude_wrong(task, hallucination):
    n = 50
    clean = generate(task, n, seed=1, style="long", tokens=300)
    noisy = generate(task, n, seed=1, style="long", tokens=300, hallucination=hallucination)
    flagged = [e for e in noisy if e.meta["hallucinated"]]
    assert len(flagged) == round(hallucination * n)
    for c, e in zip(clean, noisy):
        assert (e.question, e.answer, e.teacher_answer) == (c.question, c.answer, c.answer)
        claim = _last_line_claim(e)
        if e.meta["hallucinated"]:
            assert claim is not None and claim != e.answer  # an uncorrected detour or a wrong conclusion
        else:
            assert claim == e.answer and e.rationale == c.rationale
    modes = {e.meta["hallucination"] for e in flagged}
    assert modes == {"wrong_step", "wrong_conclusion"}
    # A wrong step is a detour taken and never undone: the misreading note is there, and the
    # trace keeps following it to the end.
    for e in (e for e in flagged if e.meta["hallucination"] == "wrong_step"):
        assert "Let me redo it with that." in e.rationale


@pytest.mark.parametrize("task", TASKS)
def test_long_style_is_deterministic_and_keeps_the_questions(task):
    a = generate(task, 30, seed=5, style="long", tokens=250, hallucination=0.2)
    b = generate(task, 30, seed=5, style="long", tokens=250, hallucination=0.2)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    assert [e.rationale for e in generate(task, 30, seed=6, style="long", tokens=250)] != [e.rationale for e in a]
    short = generate(task, 30, seed=5, hallucination=0.2)
    assert [e.question for e in short] == [e.question for e in a]
    assert [e.meta["hallucinated"] for e in short] == [e.meta["hallucinated"] for e in a]


def test_task_spec_carries_the_style_through_load_task_and_the_grid():
    assert parse_spec("synthetic/arithmetic") == ("arithmetic", "short", None)
    assert parse_spec("synthetic/arithmetic:long") == ("arithmetic", "long", None)
    assert parse_spec("synthetic/arithmetic:long=300") == ("arithmetic", "long", 300)
    assert with_style("synthetic/coin_flip", "long", 800) == "synthetic/coin_flip:long=800"
    assert with_style("synthetic/coin_flip", None) == "synthetic/coin_flip"
    train = load_task("synthetic/tracking:long=300", "train", n=20, hallucination=0.5)
    assert all(e.meta["style"] == "long" and trace_tokens(e.rationale) >= 280 for e in train)
    assert sum(e.meta["hallucinated"] for e in train) == 10
    test = load_task("synthetic/tracking:long=300", "test", n=20)
    assert [e.question for e in test] == [e.question for e in load_task("synthetic/tracking", "test", n=20)]
    for bad in ("synthetic/coin_flip:huge", "synthetic/coin_flip:long=x", "synthetic/coin_flip:short=3"):
        with pytest.raises(UserError, match="bad synthetic task spec"):
            load_task(bad, "train", n=4)
    with pytest.raises(UserError, match="between"):
        load_task("synthetic/coin_flip:long=10", "train", n=4)
    with pytest.raises(UserError, match="synthetic tasks only"):
        with_style("data/x.jsonl", "long")
    cfg = load_config({"out": "x", "methods": ["pre_thinking"], "tasks": ["synthetic/coin_flip:long=300"],
                       "hallucination": [0.0, 0.4]})
    grid = cells(cfg)
    assert [c.hallucination for c in grid] == [0.0, 0.4]
    assert task_slug(grid[0].task) == "synthetic-coin_flip-long300"
    with pytest.raises(UserError, match="unknown synthetic task"):
        load_config({"out": "x", "methods": ["pre_thinking"], "tasks": ["synthetic/nope:long"]})


def test_teach_style_long_writes_reasoning_traces_as_rationales(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    code = main(["teach", "--data", "synthetic/arithmetic", "--teacher", "scripted", "--style", "long",
                 "--trace-tokens", "300", "--n", "12", "--hallucination", "0.5", "--keep", "all", "--out", str(out),
                 "--quiet"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = generate("arithmetic", 12, seed=0, hallucination=0.5, split="train", style="long", tokens=300)
    assert [r["rationale"] for r in records] == [e.rationale for e in expected]
    assert all(trace_tokens(r["rationale"]) >= 280 for r in records)
    assert main(["teach", "--data", "synthetic/arithmetic", "--teacher", "scripted", "--style", "long",
                 "--trace-tokens", "5", "--out", str(tmp_path / "bad.jsonl"), "--quiet"]) == 2
    assert "between" in capsys.readouterr().err


# ----- tokenizers -----------------------------------------------------------------------------------

def _pieces(tok, text: str) -> list[str]:
    return [tok.decode([i]) for i in tok(text, add_special_tokens=False).input_ids]


def test_tokenizer_splits_digits_or_characters_on_request():
    texts = [e.question + " " + e.rationale for e in generate("arithmetic", 200)] * 2
    text = "Tom has 12 apples, so 12 + 7 = 19."
    bpe, digits, chars = (train_tokenizer(texts, 600, split) for split in ("bpe", "digits", "chars"))
    assert " 12" in _pieces(bpe, text) and " apples" in _pieces(bpe, text)  # BPE merges numbers and words
    assert all(len(p.strip()) <= 1 for p in _pieces(digits, text) if re.search(r"\d", p))
    assert " apples" in _pieces(digits, text)  # words still merge
    assert all(len(p.strip()) <= 1 for p in _pieces(chars, text))
    for tok in (bpe, digits, chars):
        assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
    with pytest.raises(UserError, match="unknown tokenizer split"):
        train_tokenizer(texts, 600, "words")


def test_student_spec_names_the_tokenizer_split():
    texts = [e.question + " " + e.rationale for e in generate("last_letters", 100)]
    _, chars = build_tiny_student("micro:chars", texts, vocab_size=400)
    assert _pieces(chars, ' "apple"')[-3:] == ["l", "e", '"']
    _, bpe = build_tiny_student("micro", texts, vocab_size=400)
    assert len(_pieces(bpe, ' "apple" and "Lucy"')) < len(_pieces(chars, ' "apple" and "Lucy"')) - 4
