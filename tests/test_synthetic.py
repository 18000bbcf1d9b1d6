"""Synthetic tasks and the scripted teacher; load_task, the front door."""

from __future__ import annotations

import random
import re

import pytest

from reasondistill.errors import UserError
from reasondistill.tasks import (
    SYNTHETIC_TASKS,
    Example,
    extract_answer,
    generate,
    is_correct,
    list_tasks,
    load_task,
    rationale_answer,
    scripted_rationale,
)

TASKS = sorted(SYNTHETIC_TASKS)


def test_required_tasks_and_types():
    assert {"coin_flip", "last_letters", "arithmetic"} <= set(TASKS)
    assert SYNTHETIC_TASKS["coin_flip"].answer_type == "yesno"
    assert SYNTHETIC_TASKS["last_letters"].answer_type == "text"
    assert SYNTHETIC_TASKS["arithmetic"].answer_type == "number"


@pytest.mark.parametrize("task", TASKS)
def test_deterministic(task):
    a, b = generate(task, 50, seed=3, hallucination=0.2), generate(task, 50, seed=3, hallucination=0.2)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    assert [e.question for e in generate(task, 50, seed=4)] != [e.question for e in a]


@pytest.mark.parametrize("task", TASKS)
def test_examples_are_well_formed_and_short(task):
    examples = generate(task, 300, seed=0)
    for e in examples:
        assert e.task == f"synthetic/{task}" and e.answer_type == SYNTHETIC_TASKS[task].answer_type
        assert e.teacher_answer == e.answer and e.teacher_correct is True
        assert e.meta["hallucinated"] is False and "problem" in e.meta
        words = 120 if task == "tracking" else 60  # tracking follows each of the three balls
        assert len(e.rationale.split()) < words and len(e.question.split()) < 60
        assert "answer" not in e.rationale.lower()  # methods add the answer line themselves
    assert len({e.id for e in examples}) == len(examples)
    if task == "arithmetic":
        assert all(int(n) < 20 for e in examples for n in re.findall(r"\d+", e.question))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("hallucination, n", [(0.3, 100), (0.25, 10), (1.0, 20), (0.0, 20)])
def test_hallucination_count_exact_and_gold_unchanged(task, hallucination, n):
    clean = generate(task, n, seed=1)
    noisy = generate(task, n, seed=1, hallucination=hallucination)
    flagged = [e for e in noisy if e.meta["hallucinated"]]
    assert len(flagged) == round(hallucination * n)
    for c, e in zip(clean, noisy):
        # Same questions and gold at any hallucination level; the teacher still states the gold answer.
        assert (e.question, e.answer, e.teacher_answer) == (c.question, c.answer, c.answer)
        assert (e.rationale != c.rationale) == e.meta["hallucinated"]
    modes = {e.meta["hallucination"] for e in flagged}
    assert modes <= {"wrong_step", "wrong_conclusion"}
    if len(flagged) >= 20:
        assert modes == {"wrong_step", "wrong_conclusion"}


def _final_claim(e: Example) -> str | None:
    """The answer the rationale's last sentence argues for, in the task's answer form."""
    last = e.rationale.rsplit(". ", 1)[-1]
    task = e.task.removeprefix("synthetic/")
    if task == "coin_flip":
        return {"heads": "yes", "tails": "no"}[re.search(r"ends (heads|tails) up", last).group(1)]
    if task == "last_letters":
        return re.search(r'make "(\w+)"', last).group(1)
    if task == "arithmetic":
        return extract_answer(last, "number")
    return re.search(r"ends with ball ([ABC])\.$", last).group(1)


@pytest.mark.parametrize("task", TASKS)
def test_clean_rationale_concludes_gold_and_corrupted_one_does_not(task):
    examples = generate(task, 200, seed=2, hallucination=0.5)
    for e in examples:
        assert is_correct(_final_claim(e), e.answer, e.answer_type) != e.meta["hallucinated"], e.rationale


def test_coin_flip_rationale_follows_the_flips():
    e = next(e for e in generate("coin_flip", 50, seed=0) if len(e.meta["problem"]["names"]) == 4)
    steps = e.rationale.split(". ")
    heads = True
    for name, flip, step in zip(e.meta["problem"]["names"], e.meta["problem"]["flips"], steps):
        heads ^= flip
        assert step.startswith(f"{name} {'flips' if flip else 'does not flip'} the coin")
        assert f"{'heads' if heads else 'tails'} up" in step


def test_tracking_rationale_follows_every_ball_and_lets_the_asker_swap_last():
    """Each ball's holder is named after each swap (replayed here), so a student reads every holder
    from the step before it; each trace ends with one more swap, of the asked person with the
    asker, so only the asked person's ball goes to the asker, and the conclusion names that ball
    by its answer letter."""
    for e in generate("tracking", 40, seed=5):
        p = e.meta["problem"]
        names, target = p["names"], p["names"][p["target"]]
        expected = []
        for ball, letter in enumerate("ABC"):
            who = names[ball]
            expected.append(f"Ball {letter}: {who} has it.")
            for a, b in p["swaps"] + [(p["target"], None)]:
                pair = {names[a]: "Asker" if b is None else names[b]}
                pair.update({v: k for k, v in pair.items()})
                who = pair.get(who, who)
                expected.append(f"{names[a]} and {pair[names[a]]} swap: {who} has it.")
            expected.append(f"So {who} gets {letter}.")
        expected.append(f"So {target} ends with ball {e.answer}.")
        assert e.rationale == " ".join(expected)
        assert e.rationale.count("Asker gets") == 1 and rationale_answer(e, e.rationale) == e.answer
    for e in generate("tracking", 60, seed=5, hallucination=1.0):  # a wrong step: the asker follows it
        asker_gets = re.search(r"Asker gets ([ABC])\.", e.rationale).group(1)
        claim = rationale_answer(e, e.rationale)
        assert claim != e.answer and (claim == asker_gets) == (e.meta["hallucination"] == "wrong_step")


def test_scripted_rationale_serves_any_synthetic_example():
    e = generate("arithmetic", 1, seed=5)[0]
    assert scripted_rationale(e, random.Random(0)) == e.rationale
    bad = scripted_rationale(e, random.Random(0), hallucinate=True)
    assert bad != e.rationale
    # It works from meta alone, e.g. after a JSONL round trip.
    assert scripted_rationale(Example.from_dict(e.to_dict()), random.Random(0)) == e.rationale
    with pytest.raises(UserError, match="meta\\['problem'\\]"):
        scripted_rationale(Example(id="x", question="q", answer="1", task="synthetic/arithmetic"), random.Random(0))


def test_generate_rejects_bad_arguments():
    with pytest.raises(UserError, match="unknown synthetic task 'dates'.*coin_flip"):
        generate("dates", 5)
    with pytest.raises(UserError, match="hallucination"):
        generate("coin_flip", 5, hallucination=1.5)
    with pytest.raises(UserError, match="non-negative"):
        generate("coin_flip", -1)


# ----- load_task -----------------------------------------------------------------------------------

@pytest.mark.parametrize("task", TASKS)
def test_load_task_synthetic_splits(task):
    train = load_task(f"synthetic/{task}", "train", hallucination=0.2)
    test = load_task(f"synthetic/{task}", "test", hallucination=0.2)
    assert (len(train), len(test)) == (1000, 200)
    assert sum(e.meta["hallucinated"] for e in train) == 200
    assert not any(e.meta["hallucinated"] for e in test)  # test sets are always clean
    assert not {e.question for e in train} & {e.question for e in test}
    assert len({e.question for e in test}) > 100  # varied, not a handful of repeats
    assert len(load_task(f"synthetic/{task}", "all", n=30)) == 60


def test_load_task_path(shared_data):
    path = str(shared_data / "zero-shot-cot" / "coin_flip.jsonl")
    train, test = load_task(path, "train"), load_task(path, "test")
    assert (len(train), len(test)) == (400, 100)
    assert not {e.id for e in train} & {e.id for e in test}
    assert [e.id for e in load_task(path, "test")] == [e.id for e in test]
    assert len(load_task(path, "all")) == 500
    assert [e.id for e in load_task(path, "train", n=10)] == [e.id for e in train[:10]]
    assert len(load_task(path, "test", test_fraction=0.5)) == 250


def test_load_task_errors(tmp_path, shared_data):
    with pytest.raises(UserError, match="unknown task or missing file 'gsm8kk'; run `reasondistill tasks list`"):
        load_task("gsm8kk")
    with pytest.raises(UserError, match="unknown task or missing file"):
        load_task(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="unknown synthetic task"):
        load_task("synthetic/nope")
    with pytest.raises(UserError, match="unknown split 'dev'"):
        load_task("synthetic/coin_flip", "dev")
    path = str(shared_data / "zero-shot-cot" / "coin_flip.jsonl")
    with pytest.raises(UserError, match="unknown split"):
        load_task(path, "validation")
    with pytest.raises(UserError, match="synthetic tasks only"):
        load_task(path, hallucination=0.1)


def test_list_tasks():
    rows = list_tasks()
    names = {r["name"] for r in rows}
    assert {"synthetic/coin_flip", "synthetic/arithmetic", "gsm8k", "jsonl", "hf:gsm8k"} <= names
    assert {r["kind"] for r in rows} == {"synthetic", "format", "hub"}
    assert all(r["description"] for r in rows)


def test_rationale_answer_reads_each_scripted_conclusion():
    """Clean scripted rationales argue for the gold answer; 'wrong_conclusion' ones for another."""
    for task in ("coin_flip", "last_letters", "arithmetic", "tracking"):
        examples = generate(task, 60, seed=3, hallucination=0.5)
        for ex in examples:
            claim = rationale_answer(ex, ex.rationale)
            if not ex.meta["hallucinated"]:
                assert claim == ex.answer, (task, ex.rationale)
            elif ex.meta.get("hallucination") == "wrong_conclusion":
                assert claim is not None and claim != ex.answer, (task, ex.rationale)
