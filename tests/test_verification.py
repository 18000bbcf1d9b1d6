"""Math answers as reasoning teachers write them: read from the text, compared with gold.

Each row is (teacher text, gold, expected correct). The text goes through the same two steps a
teacher record does: ``extract_answer`` then ``is_correct``. The rows include the faults reported
against math-verify (a bold ``**73**`` after other numbers, a subset of a multi-answer gold) and
the ones against our own regex parser before math-verify (``\\boxed{\\frac{7}{2}}`` read as 7).
"""

from __future__ import annotations

import threading

import pytest

from reasondistill.tasks import extract_answer, is_correct, normalize
from reasondistill.tasks.verification import equivalent, last_boxed

CASES = [
    # fractions and decimals
    (r"The answer is $\boxed{\frac{7}{2}}$.", "3.5", True),
    (r"So the total is \boxed{\dfrac{7}{2}}", "3.5", True),
    (r"\boxed{\tfrac{3}{4}}", "0.75", True),
    (r"\boxed{3/4}", "0.75", True),
    (r"\boxed{\frac{1}{3}}", "0.333333", True),
    (r"\boxed{\frac{7}{2}}", "7", False),
    (r"\boxed{\frac{7}{2}}", "2", False),
    (r"The answer is $\frac{5}{2}$.", "2.5", True),
    (r"The answer is \dfrac{9}{4} dollars.", "2.25", True),
    (r"\boxed{-\frac{1}{2}}", "-0.5", True),
    (r"\boxed{2\frac{1}{2}}", "2.5", True),
    # percentages
    (r"\boxed{50\%}", "50", True),
    (r"\boxed{50\%}", "0.5", True),
    (r"The answer is 25%.", "25", True),
    (r"\boxed{12\%}", "13", False),
    # thousands separators and units
    (r"\boxed{1,000}", "1000", True),
    (r"\boxed{1{,}000}", "1000", True),
    (r"\boxed{1\,000\,000}", "1000000", True),
    (r"\boxed{\$18}", "18", True),
    (r"\boxed{18 \text{ apples}}", "18", True),
    (r"\boxed{\text{13}}", "13", True),
    (r"The answer is $1,234.", "1234", True),
    (r"Therefore, the answer (arabic numerals) is 12{,}000.", "12000", True),
    # several boxes and numbers: the last box is the final answer
    (r"First \boxed{12}, but checking again, \boxed{14}.", "14", True),
    (r"First \boxed{12}, but checking again, \boxed{14}.", "12", False),
    (r"Left: 437 + 2*234 = 905. So 489 - 73 = 416. Final Answer: **73**", "73", True),
    (r"The number of residents is **73**.", "73", True),
    # multi-answer golds: a subset is not the answer
    (r"\boxed{1728}", "1331 and 1728", False),
    (r"\boxed{1331, 1728}", "1728, 1331", True),
    (r"\boxed{2}", "2, 3", False),
    (r"\boxed{2, 3}", "2", False),
    # exactness and near misses
    (r"\boxed{1000000}", "1000050", False),
    (r"\boxed{7.01}", "7", False),
    (r"\boxed{\sqrt{2}}", "1.41421356", True),
    (r"\boxed{x = 5}", "5", True),
    (r"The answer is 18.", "18", True),
    (r"The answer is 18 apples.", "18", True),
    (r"Answer: $4.00", "4", True),
    (r"The answer is 17.", "18", False),
    (r"I cannot tell.", "18", False),
]


@pytest.mark.parametrize("text,gold,expected", CASES)
def test_teacher_answer_against_gold(text, gold, expected):
    pred = extract_answer(text, "number")
    assert is_correct(pred, gold, "number") is expected, (text, pred, gold)


def test_the_table_is_large_enough():
    assert len(CASES) >= 30 and sum(e for _, _, e in CASES) and sum(not e for _, _, e in CASES) >= 10


def test_latex_answers_are_stored_canonically():
    """A teacher record stores "3.5", not "\\frac{7}{2}": it reloads and scores like any number."""
    assert extract_answer(r"so $\boxed{\dfrac{7}{2}}$", "number") == "3.5"
    assert extract_answer(r"\boxed{50\%}", "number") == "50%"
    assert normalize(r"\frac{7}{2}", "number") == "3.5" and normalize(r"50\%", "number") == "50"
    assert last_boxed(r"a \boxed{\frac{1}{2}} b \boxed{x^{2}}") == "x^{2}"


def test_works_outside_the_main_thread():
    """math-verify's timeouts use signal.alarm, which raises in a worker thread; ours must not."""
    results = []
    t = threading.Thread(target=lambda: results.append((equivalent(r"\frac{9}{2}", "4.5"),
                                                        is_correct(r"\frac{9}{2}", "4", "number"))))
    t.start()
    t.join(60)
    assert results == [(True, False)]


def test_other_answer_types_keep_their_parser():
    assert is_correct(extract_answer(r"The answer is \boxed{B}.", "choice", {"A": "x", "B": "y"}), "B", "choice")
    assert is_correct(extract_answer("So the answer is yes.", "yesno"), "yes", "yesno")
    assert not is_correct("1/2", "0.5", "text")
