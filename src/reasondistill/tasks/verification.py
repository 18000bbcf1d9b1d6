"""Math answers written in LaTeX, read and compared with ``math-verify``.

Reasoning teachers answer ``$\\boxed{\\frac{7}{2}}$``, ``\\dfrac``, ``50\\%`` or ``1{,}000``; a
regex reads the 7 and calls it wrong against gold 3.5. ``math-verify`` (what open-r1, TRL and
SkyThought score with) parses LaTeX into sympy and compares values, so we use it for every
comparison that is not two plain decimals. Two of its reported faults are guarded here rather
than inherited:

- it is handed an already isolated answer span (the last ``\\boxed{}``, or the text after the
  answer marker), never the whole output, so an earlier number in the argument cannot be picked
  instead of the final ``**73**`` (and ``**`` bold markers are removed first);
- only the first parsed value of each side is compared, not math-verify's list of alternatives
  with its any-pair rule, so a prediction that names one answer of a multi-answer gold
  ("1728" against "1331 and 1728") is wrong, as it should be.

math-verify's timeouts use ``signal.alarm``, which only works in the main thread; elsewhere (a
server's worker thread, an executor) they are turned off and the span length is bounded instead.
math-verify is imported on first use: plain-number comparisons never pay for sympy.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from typing import Any

MAX_SPAN = 300  # longer "answers" are arguments, not answers, and could make sympy slow
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PLAIN_RE = re.compile(r"[+-]?\d+(?:\.\d+)?")
_THOUSANDS_RE = re.compile(r"(?<=\d)(?:\\,|\\ |\{,\}|\\!|,)(?=\d{3}(?!\d))")
TIMEOUT_S = 5


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (braces matched), or None."""
    starts = list(_BOXED_RE.finditer(text or ""))
    for m in reversed(starts):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0 and text[m.end():i - 1].strip():
            return text[m.end():i - 1].strip()
    return None


def looks_latex(span: str) -> bool:
    """Whether a span needs math-verify to be read (commands, braces, powers)."""
    return bool(re.search(r"[\\{}^]", span))


def is_plain_number(text: str) -> bool:
    """A bare decimal ("3", "-0.5"): our own parser compares these exactly and fast."""
    return bool(_PLAIN_RE.fullmatch(str(text).strip()))


def _clean(span: str) -> str:
    span = str(span).strip().replace("**", "").replace("\\$", "").strip()
    span = span.strip("$").strip().rstrip(".").strip()
    span = _THOUSANDS_RE.sub("", span)  # "1\\,000\\,000", "1{,}000": math-verify reads 1*0*0
    return span[:MAX_SPAN]


def _timeout() -> int | None:
    return TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parsed(span: str) -> Any | None:
    """The first value math-verify reads from an isolated span, or None."""
    import math_verify
    from math_verify import ExprExtractionConfig, LatexExtractionConfig
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeout disabled" note, per thread
    text = f"${span}$"
    try:
        found = math_verify.parse(text, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
                                  parsing_timeout=_timeout())
    except Exception:  # noqa: BLE001 (a parser fault means "cannot read", never a crash)
        return None
    return found[0] if found else None


def number_of(span: str) -> float | None:
    """The numeric value of a LaTeX answer (``\\frac{7}{2}`` -> 3.5, ``50\\%`` -> 0.5), or None."""
    value = _parsed(_clean(span))
    try:
        if value is not None and getattr(value, "is_number", False):
            return float(value.doit().evalf())  # complex values raise TypeError: not an answer we score
    except (TypeError, ValueError, AttributeError):
        pass
    return None


def equivalent(pred: str, gold: str) -> bool | None:
    """Whether two isolated answers have the same value, as math-verify judges it; None when
    math-verify cannot read one of them (the caller then falls back to its own parser)."""
    import math_verify
    p, g = _parsed(_clean(pred)), _parsed(_clean(gold))
    if p is None or g is None:
        return None
    try:
        return bool(math_verify.verify([g], [p], timeout_seconds=_timeout()))
    except Exception:  # noqa: BLE001
        return None
