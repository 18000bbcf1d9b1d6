"""Teacher records, the correctness filter, dedup, and per-task statistics.

A record is one rationale in the "teacher" format that ``tasks.loaders`` detects (``id, task,
question, choices?, answer, answer_type, rationale, teacher_answer, teacher, ...``), so a rationale
file feeds ``reasondistill train --data`` directly. Filtering keeps rationales whose stated answer
matches gold, since a wrong answer usually means a wrong rationale (it cannot catch a right answer
reached by a wrong argument: that is the noise post-thinking methods are meant to withstand).
A truncated rationale (cut at the token limit, or a think block never closed) is an unfinished
argument, so ``correct`` drops it too; ``all`` keeps it, marked, for inspection.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import UserError
from ..tasks import Example, is_correct

KEEP = ("correct", "all")


def make_record(example: Example, rationale: str, teacher_answer: str | None, teacher: str, *,
                sample: int = 0, samples: int = 1, answer_line: str = "",
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One teacher record; with several samples per question each gets its own id (``id#s1``).
    ``extra``: what the call told besides the text (``truncated``, ``finish_reason``, ``usage``,
    ``thinking_tokens``, ``rationale_tokens``)."""
    correct = is_correct(teacher_answer, example.answer, example.answer_type) if teacher_answer else None
    record: dict[str, Any] = {
        "id": f"{example.id}#s{sample}" if samples > 1 else example.id,
        "task": example.task, "question": example.question}
    if example.choices:
        record["choices"] = example.choices
    record.update({"answer": example.answer, "answer_type": example.answer_type, "rationale": rationale.strip(),
                   "teacher_answer": teacher_answer, "teacher": teacher, "teacher_correct": correct})
    if answer_line:
        record["teacher_answer_line"] = answer_line
    if samples > 1:
        record.update({"source_id": example.id, "sample": sample})
    record.update(extra or {})
    if example.meta:
        record["meta"] = example.meta
    return record


def record_from_example(example: Example, teacher: str | None = None) -> dict[str, Any]:
    """An already loaded example (any format) as a teacher record, for ``reasondistill filter``."""
    record = make_record(example, example.rationale or "", example.teacher_answer,
                         teacher or str(example.meta.get("teacher", "")))
    record["meta"] = {k: v for k, v in example.meta.items() if k not in ("teacher", "teacher_correct")}
    if not record["meta"]:
        del record["meta"]
    return record


def keep_records(records: list[dict[str, Any]], keep: str = "correct") -> list[dict[str, Any]]:
    """``correct``: finished rationales whose teacher answer matches gold (an unreadable answer is
    dropped, since it cannot be checked); ``all``: every record that has a rationale, truncated
    ones included."""
    if keep not in KEEP:
        raise UserError(f"--keep must be one of {', '.join(KEEP)}, not '{keep}'")
    with_text = [r for r in records if r.get("rationale")]
    if keep == "all":
        return with_text
    return [r for r in with_text if r.get("teacher_correct") is True and not r.get("truncated")]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def dedup_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeated rationales for the same question (sampling at low temperature repeats itself)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in records:
        key = (_norm(r["question"]), _norm(r.get("rationale") or ""))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


COUNTS = ("asked", "answered", "correct", "truncated", "kept")
TOKENS = ("prompt_tokens", "completion_tokens", "thinking_tokens")


def task_stats(records: list[dict[str, Any]], kept: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per task: asked (questions x samples), answered (a rationale and a readable answer),
    correct (that answer matches gold), truncated (cut off, dropped unless ``--keep all``), kept
    (in the output after filter, dedup and selection), and the tokens of all its calls as the
    teacher counted them (thinking tokens only where the server reports them); plus "total"."""
    stats: dict[str, dict[str, int]] = {}

    def row(task: str) -> dict[str, int]:
        return stats.setdefault(task, {k: 0 for k in COUNTS})

    for r in records:
        s = row(r.get("task") or "")
        s["asked"] += 1
        s["answered"] += bool(r.get("rationale")) and r.get("teacher_answer") is not None
        s["correct"] += bool(r.get("rationale")) and r.get("teacher_correct") is True
        s["truncated"] += bool(r.get("truncated"))
        for k, v in (r.get("usage") or {}).items():
            if k in TOKENS:
                s[k] = s.get(k, 0) + v
    for r in kept:
        row(r.get("task") or "")["kept"] += 1
    keys = COUNTS + tuple(k for k in TOKENS if any(k in s for s in stats.values()))
    total = {k: sum(s.get(k, 0) for s in stats.values()) for k in keys}
    return {**stats, "total": total}


def cost(row: dict[str, int], price_in: float | None, price_out: float | None) -> float | None:
    """Dollars for a row's tokens at prices per million (thinking tokens are billed as output and
    already inside completion_tokens, as OpenAI and DeepSeek count them)."""
    if price_in is None and price_out is None:
        return None
    return (row.get("prompt_tokens", 0) * (price_in or 0) + row.get("completion_tokens", 0) * (price_out or 0)) / 1e6


def format_stats(stats: dict[str, dict[str, int]], price_in: float | None = None,
                 price_out: float | None = None) -> str:
    """The statistics as an aligned text table (tokens and cost when known)."""
    width = max([len("task")] + [len(t) for t in stats])
    tokens = [k for k in TOKENS if k in stats.get("total", {})]
    heads = {"prompt_tokens": "prompt tok", "completion_tokens": "compl tok", "thinking_tokens": "think tok"}
    priced = price_in is not None or price_out is not None
    line = f"{'task':<{width}}  {'asked':>7} {'answered':>9} {'correct':>8} {'truncated':>9} {'kept':>7}"
    lines = [line + "".join(f" {heads[k]:>11}" for k in tokens) + (f" {'cost $':>10}" if priced else "")]
    for task, s in stats.items():
        line = (f"{task:<{width}}  {s['asked']:>7} {s['answered']:>9} {s['correct']:>8} {s.get('truncated', 0):>9} "
                f"{s['kept']:>7}")
        line += "".join(f" {s[k]:>11}" if k in s else f" {'-':>11}" for k in tokens)
        lines.append(line + (f" {cost(s, price_in, price_out):>10.4f}" if priced else ""))
    return "\n".join(lines)
