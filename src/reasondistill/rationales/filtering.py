"""Teacher records, the correctness filter, dedup, and per-task statistics.

A record is one rationale in the "teacher" format that ``tasks.loaders`` detects (``id, task,
question, choices?, answer, answer_type, rationale, teacher_answer, teacher, ...``), so a rationale
file feeds ``reasondistill train --data`` directly. Filtering keeps rationales whose stated answer
matches gold, since a wrong answer usually means a wrong rationale (it cannot catch a right answer
reached by a wrong argument: that is the noise post-thinking methods are meant to withstand).
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import UserError
from ..tasks import Example, is_correct

KEEP = ("correct", "all")


def make_record(example: Example, rationale: str, teacher_answer: str | None, teacher: str, *,
                sample: int = 0, samples: int = 1, answer_line: str = "") -> dict[str, Any]:
    """One teacher record; with several samples per question each gets its own id (``id#s1``)."""
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
    """``correct``: rationales whose teacher answer matches gold (an unreadable answer is dropped,
    since it cannot be checked); ``all``: every record that has a rationale."""
    if keep not in KEEP:
        raise UserError(f"--keep must be one of {', '.join(KEEP)}, not '{keep}'")
    with_text = [r for r in records if r.get("rationale")]
    return with_text if keep == "all" else [r for r in with_text if r.get("teacher_correct") is True]


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


def task_stats(records: list[dict[str, Any]], kept: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per task: asked (teacher calls for a rationale), answered (a rationale and a readable answer),
    correct (that answer matches gold), kept (in the output after filter and dedup); plus "total"."""
    stats: dict[str, dict[str, int]] = {}

    def row(task: str) -> dict[str, int]:
        return stats.setdefault(task, {"asked": 0, "answered": 0, "correct": 0, "kept": 0})

    for r in records:
        s = row(r.get("task") or "")
        s["asked"] += 1
        s["answered"] += bool(r.get("rationale")) and r.get("teacher_answer") is not None
        s["correct"] += bool(r.get("rationale")) and r.get("teacher_correct") is True
    for r in kept:
        row(r.get("task") or "")["kept"] += 1
    total = {k: sum(s[k] for s in stats.values()) for k in ("asked", "answered", "correct", "kept")}
    return {**stats, "total": total}


def format_stats(stats: dict[str, dict[str, int]]) -> str:
    """The statistics as an aligned text table."""
    width = max([len("task")] + [len(t) for t in stats])
    lines = [f"{'task':<{width}}  {'asked':>7} {'answered':>9} {'correct':>8} {'kept':>7}"]
    for task, s in stats.items():
        lines.append(f"{task:<{width}}  {s['asked']:>7} {s['answered']:>9} {s['correct']:>8} {s['kept']:>7}")
    return "\n".join(lines)
