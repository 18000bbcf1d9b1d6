"""Choosing among several rationales of one question (``teach --samples N``).

Sampling a teacher N times gives up to N correct rationales per question. Keeping all of them
weights the questions the teacher finds easy; one per question keeps the data set balanced, and
small students learn better from shorter traces, hence ``shortest-correct`` and a length cap
(``max_rationale_tokens``, in the teacher's tokens as recorded on each record). Selection runs
after the correctness filter and dedup, on whatever they kept.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError

SELECT = ("all-correct", "shortest-correct", "first-correct")


def _tokens(record: dict[str, Any]) -> int:
    value = record.get("rationale_tokens")
    return int(value) if value is not None else len(str(record.get("rationale", "")).split())


def select_records(records: list[dict[str, Any]], select: str = "all-correct",
                   max_rationale_tokens: int | None = None) -> list[dict[str, Any]]:
    """``all-correct``: every record; ``shortest-correct``: per question the one with the fewest
    rationale tokens (the lower sample index on a tie); ``first-correct``: per question the lowest
    sample index. Records over ``max_rationale_tokens`` are dropped first. Order is kept."""
    if select not in SELECT:
        raise UserError(f"--select must be one of {', '.join(SELECT)}, not '{select}'")
    if max_rationale_tokens is not None and max_rationale_tokens < 1:
        raise UserError(f"--max-rationale-tokens must be at least 1, got {max_rationale_tokens}")
    pool = [r for r in records if max_rationale_tokens is None or _tokens(r) <= max_rationale_tokens]
    if select == "all-correct":
        return pool
    def rank(r: dict[str, Any]) -> tuple[int, int]:
        return (_tokens(r) if select == "shortest-correct" else 0, r.get("sample", 0))

    best: dict[str, dict[str, Any]] = {}
    for r in pool:
        q = str(r.get("source_id", r["id"]))
        if q not in best or rank(r) < rank(best[q]):
            best[q] = r
    chosen = {id(r) for r in best.values()}
    return [r for r in pool if id(r) in chosen]


def selection_stats(records: list[dict[str, Any]], max_rationale_tokens: int | None = None) -> dict[str, dict]:
    """What each choice would keep from ``records``: how many rationales, their mean length."""
    out = {}
    for name in SELECT:
        kept = select_records(records, name, max_rationale_tokens)
        mean = sum(_tokens(r) for r in kept) / len(kept) if kept else 0.0
        out[name] = {"kept": len(kept), "mean_rationale_tokens": round(mean, 1)}
    if max_rationale_tokens is not None:
        out["over_max_rationale_tokens"] = len(records) - len(select_records(records, "all-correct",
                                                                             max_rationale_tokens))
    return out


def format_selection(stats: dict[str, dict], chosen: str) -> str:
    """One line: what each --select choice keeps, the chosen one marked."""
    parts = [f"{name}{'*' if name == chosen else ''} {s['kept']} (mean {s['mean_rationale_tokens']:g} tokens)"
             for name, s in stats.items() if name in SELECT]
    line = "select: " + ", ".join(parts)
    if "over_max_rationale_tokens" in stats:
        line += f"; {stats['over_max_rationale_tokens']} over --max-rationale-tokens dropped"
    return line
