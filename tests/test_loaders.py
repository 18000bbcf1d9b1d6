"""Loaders on the real files in ../shared/data, and every user-error path on small temp files."""

from __future__ import annotations

import json

import pytest

from reasondistill.errors import UserError
from reasondistill.tasks import detect_format, infer_answer_type, load_path, train_test_split
from reasondistill.tasks.loaders import (load_gsm8k, load_json_array, load_jsonl, load_logic, load_semcot,
                                         load_teacher_records)


def _rate(examples) -> float:
    return sum(e.teacher_correct is True for e in examples) / len(examples)


def test_gsm8k(shared_data):
    path = shared_data / "gsm8k" / "train.jsonl"
    examples = load_gsm8k(path)
    assert len(examples) == 7473
    first = examples[0]
    assert (first.id, first.answer, first.answer_type, first.task) == ("gsm8k-1", "72", "number", "gsm8k")
    assert first.rationale.startswith("Natalia sold 48/2 = 24 clips in May.")
    assert not any("<<" in e.rationale or "####" in e.rationale for e in examples)
    assert detect_format(path) == "gsm8k"


@pytest.mark.parametrize("task, answer_type, count, teacher_rate", [
    ("multiarith", "number", 600, 0.787), ("aqua", "choice", 254, 0.335),
    ("coin_flip", "yesno", 500, 0.914), ("last_letters", "text", 500, 0.576),
])
def test_zero_shot_cot(shared_data, task, answer_type, count, teacher_rate):
    path = shared_data / "zero-shot-cot" / f"{task}.jsonl"
    assert detect_format(path) == "teacher"
    examples = load_teacher_records(path)
    assert len(examples) == count
    assert {e.answer_type for e in examples} == {answer_type}
    assert _rate(examples) == pytest.approx(teacher_rate, abs=0.002)
    e = examples[0]
    assert e.task == task and e.id == f"{task}-00000" and e.rationale
    assert "teacher_answer_line" in e.meta and "teacher" in e.meta  # extra fields are kept
    if answer_type == "choice":
        assert set(e.choices) == set("ABCDE") and e.answer in e.choices


def test_zero_shot_cot_teacher_answers_are_normalized(shared_data):
    examples = load_path(shared_data / "zero-shot-cot" / "coin_flip.jsonl")
    assert {e.teacher_answer for e in examples} <= {"yes", "no"}
    assert examples[0].answer == "yes" and examples[0].teacher_correct is True


def test_step_by_step_svamp(shared_data):
    path = shared_data / "step-by-step" / "svamp_train.jsonl"
    examples = load_path(path)
    assert len(examples) == 800 and detect_format(path) == "teacher"
    assert examples[0].answer == "42" and examples[0].answer_type == "number"
    assert examples[0].meta["equation"] == "( 84.0 / 2.0 )"
    assert _rate(examples) == pytest.approx(0.728, abs=0.002)
    # A teacher answer missing in the record means "teacher gave none", not "teacher was wrong".
    assert sum(e.teacher_correct is None for e in examples) == 58


def test_semcot(shared_data):
    path = shared_data / "semcot" / "svamp" / "train_42.json"
    assert detect_format(path) == "semcot"
    examples = load_json_array(path)
    assert len(examples) == 700 and examples[0].answer == "145" and examples[0].answer_type == "number"
    assert examples[0].rationale.startswith("The question is in type of Common-Division")
    assert examples[0].meta["condensed_reasoning"].startswith("Divide 290 bananas")
    assert "full_answer" not in examples[0].meta


def test_semcot_multiple_choice_splits_choices_out_of_the_query(shared_data):
    examples = load_semcot(shared_data / "semcot" / "commonsense_qa" / "train_42.json")
    e = examples[0]
    assert e.answer_type == "choice" and e.choices == {"A": "ignore", "B": "enforce", "C": "authoritarian",
                                                        "D": "yell at", "E": "avoid"}
    assert "Choices:" not in e.question and e.question.endswith("to change?")


def test_logic_prontoqa(shared_data):
    path = shared_data / "logic" / "prontoqa_dev.json"
    assert detect_format(path) == "logic"
    examples = load_path(path)
    assert len(examples) == 500
    e = examples[0]
    assert (e.id, e.answer, e.answer_type, e.task) == ("ProntoQA_1", "B", "choice", "prontoqa")
    assert e.choices == {"A": "True", "B": "False"}
    assert e.question.startswith("Jompuses are not shy.") and e.question.endswith("Max is sour.")
    assert e.rationale.startswith("Max is a yumpus.") and e.rationale.endswith("Max is not sour.")


def test_logic_proofwriter_has_three_options(shared_data):
    examples = load_logic(shared_data / "logic" / "proofwriter_dev.json")
    assert len(examples) == 600 and examples[0].choices == {"A": "True", "B": "False", "C": "Unknown"}
    assert examples[0].rationale is None


# ----- user errors ---------------------------------------------------------------------------------

def _write(tmp_path, name: str, lines: list[str]):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="nope.jsonl.*file not found"):
        load_path(tmp_path / "nope.jsonl")
    with pytest.raises(UserError, match="file not found"):
        load_gsm8k(tmp_path / "nope.jsonl")


def test_malformed_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, "bad.jsonl", ['{"question": "q", "answer": "1"}', '{"question": "q", "answer"'])
    with pytest.raises(UserError, match=r"bad\.jsonl:2: malformed JSON"):
        load_jsonl(path)
    with pytest.raises(UserError, match=r"bad\.jsonl:2"):
        load_path(path)


def test_missing_field_names_field_and_line(tmp_path):
    path = _write(tmp_path, "data.jsonl", ['{"question": "q1", "answer": "1"}', '{"question": "q2"}'])
    with pytest.raises(UserError, match=r"data\.jsonl:2, field 'answer': missing required field"):
        load_jsonl(path)
    gsm = _write(tmp_path, "gsm.jsonl", ['{"question": "q", "answer": "so 3\\n#### 3"}', '{"answer": "#### 4"}'])
    with pytest.raises(UserError, match=r"gsm\.jsonl:2, field 'question'"):
        load_gsm8k(gsm)
    no_marker = _write(tmp_path, "gsm2.jsonl", ['{"question": "q", "answer": "it is 3"}'])
    with pytest.raises(UserError, match=r"gsm2\.jsonl:1, field 'answer': no final '#### <number>' line"):
        load_gsm8k(no_marker)


def test_missing_field_in_json_array_names_the_record(tmp_path):
    path = tmp_path / "logic.json"
    path.write_text(json.dumps([{"context": "c", "question": "q", "options": ["A) x"], "answer": "A"},
                                {"context": "c", "options": ["A) x"], "answer": "A"}]))
    with pytest.raises(UserError, match=r"logic\.json, field 'question': record 2: missing required field"):
        load_logic(path)


def test_unreadable_gold_answer(tmp_path):
    path = _write(tmp_path, "d.jsonl", ['{"question": "q", "answer": "1"}', '{"question": "q", "answer": "x"}'])
    with pytest.raises(UserError, match=r"d\.jsonl:2, field 'answer': cannot read 'x' as a number"):
        load_jsonl(path, answer_type="number")


def test_empty_file(tmp_path):
    path = _write(tmp_path, "empty.jsonl", ["", "  "])
    with pytest.raises(UserError, match=r"no examples in .*empty\.jsonl"):
        load_path(path)
    with pytest.raises(UserError, match="no examples in"):
        load_jsonl(path)
    array = tmp_path / "empty.json"
    array.write_text("[]")
    with pytest.raises(UserError, match="no examples in"):
        load_semcot(array)


def test_unknown_format_lists_valid_ones(tmp_path):
    path = _write(tmp_path, "d.jsonl", ['{"question": "q", "answer": "1"}'])
    with pytest.raises(UserError, match="unknown format 'csv'; valid: gsm8k, teacher, jsonl, semcot, logic"):
        load_path(path, format="csv")
    with pytest.raises(UserError, match="do not apply to format 'gsm8k'"):
        load_path(path, format="gsm8k", question_field="q")


# ----- generic loader ------------------------------------------------------------------------------

def test_generic_jsonl_with_custom_fields(tmp_path):
    path = _write(tmp_path, "mine.jsonl", [
        json.dumps({"q": "Is 3 odd?", "gold": True, "why": "3 = 2 + 1.", "src": "x"}),
        json.dumps({"q": "Is 4 odd?", "gold": False}),
    ])
    examples = load_path(path, question_field="q", answer_field="gold", rationale_field="why")
    assert [e.answer for e in examples] == ["yes", "no"] and examples[0].answer_type == "yesno"
    assert examples[0].rationale == "3 = 2 + 1." and examples[1].rationale is None
    assert examples[0].meta == {"src": "x"} and examples[0].id == "mine-1" and examples[0].task == "mine"
    assert detect_format(path) == "jsonl"


def test_choices_as_list_and_saved_examples_round_trip(tmp_path):
    rows = [{"id": "a", "question": "Pick", "choices": ["red", "blue"], "answer": "(b)"},
            {"id": "b", "question": "Pick", "choices": ["A) red", "B) blue"], "answer": "A"}]
    examples = load_jsonl(_write(tmp_path, "c.jsonl", [json.dumps(r) for r in rows]))
    assert [e.choices for e in examples] == [{"A": "red", "B": "blue"}] * 2
    assert [e.answer for e in examples] == ["B", "A"]
    # Our own saved Examples (answer_type and meta included) load back unchanged.
    saved = _write(tmp_path, "saved.jsonl", [json.dumps(e.to_dict()) for e in examples])
    assert load_path(saved) == examples


@pytest.mark.parametrize("answers, expected", [
    (["18", "1,000", "-3", "2.5", "$4"], "number"), (["A", "B", "(C)"], "choice"),
    (["yes", "No", "true"], "yesno"), (["fnel", "ab"], "text"), (["18", "abc"], "text"), ([], "text"),
])
def test_infer_answer_type(answers, expected):
    assert infer_answer_type(answers) == expected


# ----- splits --------------------------------------------------------------------------------------

def test_split_is_deterministic_and_disjoint(shared_data):
    examples = load_path(shared_data / "zero-shot-cot" / "multiarith.jsonl")
    train, test = train_test_split(examples, 0.2, seed=0)
    assert (len(train), len(test)) == (480, 120)
    assert not {e.id for e in train} & {e.id for e in test}
    assert {e.id for e in train} | {e.id for e in test} == {e.id for e in examples}
    again = train_test_split(examples, 0.2, seed=0)
    assert [e.id for e in again[1]] == [e.id for e in test]
    other = train_test_split(examples, 0.2, seed=1)
    assert [e.id for e in other[1]] != [e.id for e in test]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fraction(shared_data, fraction):
    examples = load_path(shared_data / "zero-shot-cot" / "multiarith.jsonl")
    with pytest.raises(UserError, match="test_fraction"):
        train_test_split(examples, fraction)


def test_split_rejects_too_few(tmp_path):
    examples = load_jsonl(_write(tmp_path, "one.jsonl", ['{"question": "q", "answer": "1"}']))
    with pytest.raises(UserError, match="cannot split 1 example"):
        train_test_split(examples, 0.5)


# ----- hub (offline: a stand-in for datasets.load_dataset checks the field mapping) ------------------

HUB_ROWS = {
    ("openai/gsm8k", "main"): [{"question": "Q?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}],
    ("ChilleD/SVAMP", None): [{"ID": "chal-1", "Body": "Tom had 5 cards.", "Question": "How many now?",
                               "Equation": "( 5.0 + 2.0 )", "Answer": 7.0, "Type": "Addition"}],
    ("tau/commonsense_qa", None): [
        {"id": "q1", "question": "Where?", "question_concept": "x", "answerKey": "B",
         "choices": {"label": ["A", "B"], "text": ["home", "park"]}},
        {"id": "q2", "question": "Unlabeled?", "question_concept": "x", "answerKey": "",
         "choices": {"label": ["A", "B"], "text": ["a", "b"]}}],
    ("deepmind/aqua_rat", "raw"): [{"question": "2+2?", "options": ["A)3", "B)4"], "rationale": "2+2=4",
                                    "correct": "B"}],
}


@pytest.fixture
def fake_hub(monkeypatch):
    import sys
    import types

    def load_dataset(path, name=None, split=None, **kw):
        return HUB_ROWS[(path, name)]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


def test_hub_mapping(fake_hub):
    from reasondistill.tasks import load_hf_dataset, load_task

    (g,) = load_hf_dataset("gsm8k", "train")
    assert (g.answer, g.rationale, g.answer_type) == ("7", "3 + 4 = 7", "number")
    (s,) = load_hf_dataset("svamp", "test")
    assert (s.id, s.question, s.answer) == ("chal-1", "Tom had 5 cards. How many now?", "7")
    (c,) = load_hf_dataset("commonsense_qa", "validation")  # the unlabeled row is skipped
    assert (c.answer, c.choices) == ("B", {"A": "home", "B": "park"})
    (a,) = load_hf_dataset("aqua_rat", "test")
    assert (a.answer, a.choices, a.rationale) == ("B", {"A": "3", "B": "4"}, "2+2=4")
    assert [e.id for e in load_task("hf:aqua_rat", "test", n=5)] == [a.id]
    with pytest.raises(UserError, match="unknown hub dataset 'mmlu'; supported: gsm8k, svamp"):
        load_hf_dataset("mmlu", "test")
