"""Answer parsing and scoring: tables per answer type, real teacher answer lines, and garbage."""

from __future__ import annotations

import json

import pytest

from reasondistill.errors import UserError
from reasondistill.tasks import chance_accuracy, extract_answer, is_correct, normalize


@pytest.mark.parametrize("text, expected", [
    ("18", "18"), ("1,000", "1000"), ("$18", "18"), ("18.0", "18"), ("-3", "-3"), ("+3", "3"),
    ("12.50", "12.5"), ("50%", "50"), ("2/3", "0.666667"), ("3/6", "0.5"), ("0.8333333333333334", "0.833333"),
    (" 72. ", "72"), ("$1,234.50", "1234.5"), ("18 apples", "18"), ("(84 / 2)", "42"), ("-$20", "-20"),
    ("", None), ("abc", None), ("1/0", None), ("3 or 4", None),
])
def test_normalize_number(text, expected):
    assert normalize(text, "number") == expected


@pytest.mark.parametrize("text, expected", [
    ("(B)", "B"), ("B.", "B"), ("b", "B"), ("B)", "B"), ("B", "B"), (" (d) math problem", "D"),
    ("Option C", "C"), ("A) True", "A"), ("E: none of these", "E"), ("", None), ("apple", None), ("12", None),
])
def test_normalize_choice(text, expected):
    assert normalize(text, "choice") == expected


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"), ("yes.", "yes"), ("NO", "no"), ("No, it is tails up.", "no"), ("**Yes**", "yes"),
    ("true", "yes"), ("False", "no"), ("maybe", None), ("", None), ("The coin is heads up", None),
])
def test_normalize_yesno(text, expected):
    assert normalize(text, "yesno") == expected


@pytest.mark.parametrize("text, expected", [
    ("fnel", "fnel"), (' "Fnel". ', "fnel"), ("'ab'", "ab"), ("New  York.", "new york"), ('"', None), ("", None),
])
def test_normalize_text(text, expected):
    assert normalize(text, "text") == expected


def test_unknown_answer_type_is_a_user_error():
    with pytest.raises(UserError, match="unknown answer type 'float'.*number, choice, yesno, text"):
        normalize("1", "float")
    with pytest.raises(UserError):
        extract_answer("1", "float")


AQUA_CHOICES = {"A": "550", "B": "570", "C": "600", "D": "700", "E": "none of these"}
CSQA_CHOICES = {"A": "shelf", "B": "board", "C": "desk drawer", "D": "table", "E": "dark"}


@pytest.mark.parametrize("text, answer_type, choices, expected", [
    # Real teacher answer lines (zero-shot-cot, step-by-step).
    ("Therefore, the answer (arabic numerals) is 11.", "number", None, "11"),
    ("Therefore, the answer (arabic numerals) is: 6,755", "number", None, "6755"),
    ("Therefore, the answer (arabic numerals) is 0.50.", "number", None, "0.5"),
    ("Therefore, the answer (arabic numerals) is: \n\n13 + 9 = 22", "number", None, "22"),
    ("Therefore, the answer (arabic numerals) is -$20.", "number", None, "-20"),
    ("So she scored 84 / 2 = 42 points. The answer is (84 / 2).", "number", None, "42"),
    ("The answer is (12 - 2) - 7.", "number", None, "3"),
    ("Therefore, the answer (arabic numerals) is \n\nThe harvest lasted for  weeks.", "number", None, None),
    ("Therefore, the answer (Yes or No) is Yes.", "yesno", None, "yes"),
    ("Therefore, the answer (Yes or No) is:\n\nNo", "yesno", None, "no"),
    ("Therefore, among A through E, the answer is D.", "choice", AQUA_CHOICES, "D"),
    ("Therefore, among A through E, the answer is (E).", "choice", AQUA_CHOICES, "E"),
    ("Therefore, among A through E, the answer is C and D.", "choice", AQUA_CHOICES, "C"),
    ("Therefore, among A through E, the answer is B, desk drawer.", "choice", CSQA_CHOICES, "B"),
    ("Therefore, among A through E, the answer is probably (A), (B), (C), or (D).", "choice", CSQA_CHOICES, "A"),
    ("Therefore, among A through E, the answer is (F).", "choice", AQUA_CHOICES, None),  # not E from "A through E"
    ("So the answer is (d) math problem.", "choice", None, "D"),
    ("Therefore, the answer is desk drawer.", "choice", CSQA_CHOICES, "C"),
    ('Therefore, the answer is "fnenl".', "text", None, "fnenl"),
    # The last marker wins over an earlier one.
    ("The answer is 5. Let me check again. The answer is 7.", "number", None, "7"),
    ("Answer: B\nWait. Answer: (C)", "choice", None, "C"),
    ("Step 1: 48/2 = 24.\n#### 72", "number", None, "72"),
    ("so the total is \\boxed{1,200}.", "number", None, "1200"),
    # Type-specific fallbacks when there is no marker.
    ("Natalia sold 48 + 24 = 72 clips.", "number", None, "72"),
    ("18", "number", None, "18"),
    ("A coin is heads up, so I pick (B) here.", "choice", None, "B"),
    ("A coin is heads up.", "choice", None, None),  # the article "A" is not an answer
    ("B", "choice", None, "B"),
    ("They keep it in the desk drawer.", "choice", CSQA_CHOICES, "C"),
    ("yes, but then no", "yesno", None, "no"),
    ("The coin is heads up.", "yesno", None, None),
    ('"abc"\nmore text', "text", None, "abc"),
    # Nothing parseable.
    ("", "number", None, None), ("   ", "text", None, None), ("no digits here", "number", None, None),
    ("I don't know.", "choice", AQUA_CHOICES, None),
])
def test_extract_answer(text, answer_type, choices, expected):
    assert extract_answer(text, answer_type, choices) == expected


@pytest.mark.parametrize("pred, gold, answer_type, expected", [
    ("18", "18", "number", True), ("18.0", "18", "number", True), ("$1,000", "1000", "number", True),
    ("0.6666666666666667", "0.6666666666666666", "number", True), ("2/3", "0.6666666666666666", "number", True),
    ("0.50", "0.5", "number", True), ("12.30001", "12.3", "number", True), ("12.31", "12.3", "number", False),
    ("17", "18", "number", False),
    ("1000050", "1000000", "number", False),  # integers are never "close enough"
    ("abc", "18", "number", False), (None, "18", "number", False), ("18", "abc", "number", False),
    ("(b)", "B", "choice", True), ("C", "B", "choice", False), ("Yes.", "yes", "yesno", True),
    ("no", "yes", "yesno", False), ('"FNEL".', "fnel", "text", True), ("fnl", "fnel", "text", False),
    ("", "fnel", "text", False),
])
def test_is_correct(pred, gold, answer_type, expected):
    assert is_correct(pred, gold, answer_type) is expected


def test_no_any_number_matches_leniency():
    """Gold appearing somewhere in the output is not a correct answer: only the final answer counts."""
    output = "She had 18 apples, gave away 5, so the answer is 13."
    assert not is_correct(extract_answer(output, "number"), "18", "number")


def test_chance_accuracy():
    assert chance_accuracy("yesno") == 0.5
    assert chance_accuracy("choice", {"A": "x", "B": "y", "C": "z"}) == pytest.approx(1 / 3)
    assert chance_accuracy("choice") == 0.2
    assert chance_accuracy("number") is None and chance_accuracy("text") is None


@pytest.mark.parametrize("task, answer_type, min_agree", [
    ("coin_flip", "yesno", 1.0), ("tracking_shuffled_objects", "choice", 1.0), ("multiarith", "number", 0.98),
    ("aqua", "choice", 0.98), ("last_letters", "text", 0.98),
])
def test_extract_matches_recorded_teacher_answers(shared_data, task, answer_type, min_agree):
    """On real teacher answer lines our parser agrees with the answers recorded with the data."""
    records = [json.loads(line) for line in open(shared_data / "zero-shot-cot" / f"{task}.jsonl")]
    agree = sum(extract_answer(r["teacher_answer_line"], answer_type, r.get("choices"))
                == normalize(r["teacher_answer"], answer_type) for r in records)
    assert agree / len(records) >= min_agree
    # ...and scoring the recorded teacher answer reproduces the recorded correctness.
    assert all(is_correct(r["teacher_answer"], r["answer"], answer_type) == r["teacher_correct"] for r in records)
