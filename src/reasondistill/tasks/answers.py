"""Parsing and scoring answers, one rule set per answer type: number, choice, yesno, text.

Accuracy is only as honest as the parser, so the rules are strict: an answer is read after the last
answer marker ("the answer is", "Answer:", "####"), or else by one type-specific fallback (the last
number, the last standalone choice letter, the last yes/no word). We never count "some number in the
output equals gold" as correct. Math answers in LaTeX (``\\boxed{\\frac{7}{2}}``, ``50\\%``) are read and
compared by :mod:`.verification` (math-verify); plain numbers keep the strict rules here.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from typing import Literal

from ..errors import UserError
from .verification import equivalent, is_plain_number, last_boxed, looks_latex, number_of

# The kinds of answer a task has; defined here, below the Example record that carries one.
AnswerType = Literal["number", "choice", "yesno", "text"]
ANSWER_TYPES: tuple[str, ...] = ("number", "choice", "yesno", "text")

# A number as people and models write it: "-3", "1,000", "12.50", "$18", "50%"; optional fraction.
_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER_RE = re.compile(rf"(?<![\w.])(?:{_NUM})(?:\s*/\s*\d+(?![\d.]))?")
_NUMBER_FULL_RE = re.compile(rf"[+]?({_NUM})(?:\s*/\s*(\d+(?:\.\d+)?))?")
# An arithmetic expression after a marker, e.g. "(84 / 2)" or "17 + 15 + 2 = 34".
_EXPR_RE = re.compile(r"[\s(]*\d[\d,.\s()+\-*/x×]*")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

# Answer markers. The last one in a text wins, so a restated question earlier does not count.
_MARKER_RE = re.compile(
    r"\banswer\s*(?:\([^)\n]{0,40}\)\s*)?(?:(?:is|would be|will be)\b|=|:)\s*:?"
    r"|####|\\boxed\{", re.IGNORECASE)
_QUOTES = "\"'`“”‘’*"

_YESNO = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}
_YESNO_WORD_RE = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_CHOICE_RE = re.compile(r"^(?:option|choice)?\s*\(?([A-Za-z])\)?(?:[.):,]|\s|$)", re.IGNORECASE)


def _check_type(answer_type: str) -> None:
    if answer_type not in ANSWER_TYPES:
        raise UserError(f"unknown answer type '{answer_type}'; valid: {', '.join(ANSWER_TYPES)}")


def _format_number(x: float) -> str:
    """Canonical decimal string: integers without ".0", other values to 6 decimals."""
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    s = f"{x:.6f}".rstrip("0").rstrip(".")
    return repr(x) if s in ("0", "-0") else s


def _eval_expr(text: str) -> float | None:
    """Evaluate + - * / arithmetic on numbers (no names, no calls); None if it is anything else."""
    text = text.replace(",", "").replace("×", "*").replace("x", "*")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -ev(node.operand) if isinstance(node.op, ast.USub) else ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError("not arithmetic")

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _latex_answer(span: str) -> str | None:
    """A LaTeX answer span as a canonical number ("3.5", "50%"), or the span itself when it is
    not a plain number (math-verify compares it against gold later)."""
    span = span.strip().strip("$").strip().rstrip(".").strip()
    if not span:
        return None
    value = number_of(span)
    if value is None:
        return span
    if re.search(r"\\?%\s*$", span):
        return f"{_format_number(value * 100)}%"
    return _format_number(value)


def _normalize_number(text: str) -> str | None:
    s = text.strip().strip(_QUOTES).strip()
    s = re.sub(r"\\%\s*$", "%", s)  # LaTeX's "50\%" is the "50%" people write
    if looks_latex(s):
        value = number_of(s)
        return None if value is None else _format_number(value)
    for sym in "$€£":
        s = s.replace(sym, "")
    s = s.rstrip(".").strip().removesuffix("%").strip()
    m = _NUMBER_FULL_RE.fullmatch(s)
    if m:
        value = float(m.group(1).replace(",", ""))
        if m.group(2) is not None:
            den = float(m.group(2))
            if den == 0:
                return None
            value /= den
        return _format_number(value)
    if re.fullmatch(r"[\d\s,.()+\-*/x×]+", s) and re.search(r"\d", s):
        value = _eval_expr(s)
        return None if value is None else _format_number(value)
    numbers = _NUMBER_RE.findall(s)  # "18 apples": a lone number with a unit is still that number
    return _normalize_number(numbers[0]) if len(numbers) == 1 else None


def normalize(text: str, answer_type: str) -> str | None:
    """Canonical form of an already isolated answer ("$1,000" -> "1000", "(b)" -> "B"), or None."""
    _check_type(answer_type)
    if text is None:
        return None
    text = str(text).strip()
    if not text:
        return None
    if answer_type == "number":
        return _normalize_number(text)
    if answer_type == "choice":
        m = _CHOICE_RE.match(text.strip(_QUOTES + " "))
        return m.group(1).upper() if m else None
    if answer_type == "yesno":
        m = re.match(r"[\W_]*([A-Za-z]+)", text)
        return _YESNO.get(m.group(1).lower()) if m else None
    # text: one canonical spelling, so "Fnl." and '"fnl"' score the same.
    s = " ".join(text.lower().split())
    while s and (s[0] in _QUOTES or s[-1] in _QUOTES + "."):
        s = s.strip(_QUOTES).rstrip(".").strip()
    return s or None


def _parse_after_marker(segment: str, answer_type: str, choices: dict[str, str] | None) -> str | None:
    """Read the answer at the start of the text that follows a marker (its first non-empty line)."""
    line = next((ln.strip() for ln in segment.split("\n") if ln.strip(_QUOTES + " :")), "")
    line = line.lstrip(" :*")
    if not line:
        return None
    if answer_type == "number":
        math = re.match(r"\$([^$\n]+)\$|\\\((.+?)\\\)", line)
        if math and looks_latex(math.group(1) or math.group(2)):  # "is $\frac{7}{2}$."
            return _latex_answer(math.group(1) or math.group(2))
        if line.startswith("\\"):  # "is \dfrac{7}{2}." without dollars
            return _latex_answer(re.split(r"\.\s|\s+(?=[A-Za-z]{2,}\b)", line)[0])
        token = line.split()[0].rstrip(".,;")
        if looks_latex(token):  # "is 12{,}000." or "2^{10}"
            return _latex_answer(token)
        line = line.replace("$", "")
        m = _EXPR_RE.match(line)
        if m and re.search(r"\d\s*[-+*/x×][\s(-]*\d", m.group(0)):
            expr = m.group(0).strip().rstrip(". ")
            while expr.count("(") < expr.count(")") and expr.endswith(")"):
                expr = expr[:-1]  # "is 84 / 2)." -> "84 / 2"
            after = line[m.end():]
            eq = re.match(rf"\s*=\s*({_NUM})", after)
            if eq:  # "17 + 15 = 32": the stated result is the answer
                return normalize(eq.group(1), "number")
            value = _eval_expr(expr)
            if value is not None:
                return _format_number(value)
        numbers = _NUMBER_RE.findall(line)
        return normalize(numbers[0], "number") if numbers else None
    line = line.lstrip(_QUOTES) if answer_type != "text" else line
    if answer_type == "choice":
        letters = _letters(choices)
        m = re.match(rf"(?:(?i:option|choice)\s*)?(?:\(([{letters}{letters.lower()}])\)|([{letters}])(?![\w']))", line)
        if m:  # "C.", "(E)", "(d) math problem", "C and D" -> the first one
            return (m.group(1) or m.group(2)).upper()
        # Else the first "(c)" or bare "D)" / "A or C" in the line: "probably (A), (B) or (C)".
        m = re.search(rf"\(([{letters}{letters.lower()}])\)|(?<![\w'])([{letters}])(?=[.):,]?(?:\s|$))", line)
        if m:
            return (m.group(1) or m.group(2)).upper()
        return _choice_by_text(line, choices) if choices else None
    if answer_type == "yesno":
        m = re.match(r"[\W_]*(yes|no|true|false)\b", line, re.IGNORECASE)
        if m:
            return _YESNO[m.group(1).lower()]
        m = _YESNO_WORD_RE.search(line)
        return m.group(1).lower() if m else None
    quoted = re.match(r"[\"“'`]([^\"”'`\n]+)[\"”'`]", line)
    return normalize(quoted.group(1) if quoted else line, "text")


def _letters(choices: dict[str, str] | None) -> str:
    """The option letters for a regex character class (A-E when the choices are unknown)."""
    keys = "".join(k.upper() for k in (choices or {}) if len(k) == 1 and k.isalpha())
    return keys or "ABCDE"


def _choice_by_text(text: str, choices: dict[str, str]) -> str | None:
    """The choice whose text is mentioned last (longest wins a tie), e.g. "...so desk drawer"."""
    best: tuple[int, int, str] | None = None
    low = text.lower()
    for letter, option in choices.items():
        option = str(option).strip().lower()
        if not option:
            continue
        for m in re.finditer(rf"(?<!\w){re.escape(option)}(?!\w)", low):
            key = (m.end(), len(option), letter)
            if best is None or key[:2] > best[:2]:
                best = key
    return best[2].upper() if best else None


def extract_answer(text: str, answer_type: str, choices: dict[str, str] | None = None) -> str | None:
    """Find and normalize the answer inside free text from a model or a teacher; None if absent."""
    _check_type(answer_type)
    if not text or not text.strip():
        return None
    if answer_type == "number":
        boxed = last_boxed(text)  # a boxed answer is the final answer, whatever precedes it
        if boxed is not None:
            return _latex_answer(boxed)
    markers = list(_MARKER_RE.finditer(text))
    for m in reversed(markers):
        found = _parse_after_marker(text[m.end():], answer_type, choices)
        if found is not None:
            return found
    if markers:  # "the answer is (F)." must not fall back to the "E" of "among A through E"
        text = text[markers[-1].end():]
    if answer_type == "number":
        numbers = _NUMBER_RE.findall(text)
        return normalize(numbers[-1], "number") if numbers else None
    if answer_type == "choice":
        letters = _letters(choices)
        found = re.findall(rf"\(([{letters}])\)", text)
        if found:
            return found[-1]
        if choices:
            by_text = _choice_by_text(text, choices)
            if by_text:
                return by_text
        # "B." / "B)" / " B " but not the article in "A coin is ...".
        bare = [m.group(1) for m in re.finditer(rf"(?<![\w'])([{letters}])(?=[.):,]?(?:\s|$))(?!\s+[a-z])", text)]
        return bare[-1] if bare else None
    if answer_type == "yesno":
        words = _YESNO_WORD_RE.findall(text)
        return words[-1].lower() if words else None
    first = next((ln for ln in text.split("\n") if ln.strip()), "")
    return normalize(first, "text")


def is_correct(pred: str | None, gold: str, answer_type: str) -> bool:
    """Exact match after normalizing; numbers compare numerically (integers exactly). A number
    written in LaTeX or as a percentage on either side is judged by math-verify; when it cannot
    read one side, by the strict rules."""
    if pred is None or gold is None:
        return False
    if answer_type == "number" and not (is_plain_number(pred) and is_plain_number(gold)):
        if any(looks_latex(str(x)) or "%" in str(x) or normalize(x, "number") is None for x in (pred, gold)):
            verdict = equivalent(str(pred), str(gold))
            if verdict is not None:
                return verdict
    p, g = normalize(pred, answer_type), normalize(gold, answer_type)
    if p is None or g is None:
        return False
    if answer_type != "number":
        return p == g
    if "." not in p + g and "e" not in p + g:
        return p == g  # both integers: a relative tolerance must not make 1000000 == 1000050
    return math.isclose(float(p), float(g), rel_tol=1e-4, abs_tol=1e-4)


def chance_accuracy(answer_type: str, choices: dict | None = None) -> float | None:
    """Accuracy of random guessing, the floor a report draws under the results."""
    if answer_type == "yesno":
        return 0.5
    if answer_type == "choice":
        return 1.0 / len(choices) if choices else 0.2
    return None
