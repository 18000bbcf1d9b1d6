"""Where a think-first student goes wrong on long traces: in its steps, or between them and its answer.

    python bench/trace_audit.py runs/bench/long-arithmetic runs/bench/long-letters \
        --out bench/results/trace-audit-long.json

Accuracy says that a student that writes a 200-token trace before answering is wrong; this says
where. Every evaluated run of a long-trace synthetic task under the given folders (compare cells
and plain run folders with ``predictions.jsonl``; budget rows, whose traces are cut, are left out)
is read question by question against the scripted teacher's clean trace of the same problem:

- *first pass right*: the states of the trace's first walk through the problem (the running totals,
  each word's last letter, who holds which ball after each swap, the coin's side after each person)
  are the teacher's, in order. The first pass is the trace's second line, as the teacher writes it;
- *concludes gold*: the trace's final line (what the answer line follows) names the gold answer;
- *lost after a right first pass*: of the questions with a right first pass, the share whose final
  line does not name the gold answer: the answer lost in the checks, detours and repeats between.

Rows are means over seeds per task, setting and method; answer-first rows are audited the same way
(their trace comes after the answer, so there it measures the explanation, not the answer).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import provenance, run_main, save_result

from reasondistill.errors import UserError
from reasondistill.report.plots import spread

# The state a first-pass sentence states, per task: what a step of the computation produces.
STATES = {
    "arithmetic": re.compile(r"= (-?\d+)"),
    "last_letters": re.compile(r'ends with "(\w)"'),
    "tracking": re.compile(r"(\w+) has the (\w+) ball"),
    "coin_flip": re.compile(r"(heads|tails) up"),
}


def states(task: str, line: str) -> list:
    """The sequence of states a line of a trace states, in order."""
    return STATES[task].findall(line)


def trace_of(text: str) -> str:
    """The trace in a student's output: before the answer marker (think-first), or after the
    rationale marker (answer-first: "<answer>\nRationale: <trace>")."""
    from reasondistill.layout import RATIONALE_MARKER
    from reasondistill.methods.pre_thinking import ANSWER_MARKER
    head, marker, tail = text.partition("\n" + RATIONALE_MARKER)
    return tail if marker else head.split(ANSWER_MARKER)[0]


def audit_question(task: str, example, text: str) -> dict:
    """One question: is the first pass the teacher's, and does the final line name the gold answer?"""
    from reasondistill.tasks import is_correct
    from reasondistill.tasks.long_traces import first_pass
    from reasondistill.tasks.synthetic import rationale_answer
    truth = states(task, first_pass(task, example.meta["problem"]))
    trace = trace_of(text)
    lines = trace.split("\n")
    first_pass = states(task, lines[1]) if len(lines) > 1 else []
    concluded = rationale_answer(example, trace)
    return {"first_pass_right": first_pass == truth,
            "concludes_gold": concluded is not None and is_correct(concluded, example.answer, example.answer_type)}


def labels(run_dir: Path, metrics: dict) -> dict:
    """task, method, hallucination and seed of an evaluated run: a compare cell's labels, or for a
    plain run folder (bench/settings_search.py, ``reasondistill train``) its training call, named
    by its folder."""
    if (run_dir / "cell.json").exists():
        spec = json.loads((run_dir / "cell.json").read_text())["spec"]
        return {"task": spec["task"], "method": spec["name"], "hallucination": spec["hallucination"],
                "seed": spec["seed"]}
    call = json.loads((run_dir / "train_call.json").read_text())
    return {"task": metrics["data"], "method": run_dir.name, "hallucination": call["hallucination"],
            "seed": call["seed"]}


def audit_cell(run_dir: Path) -> dict | None:
    """The audit of one evaluated run, or None when it is not a long-trace synthetic run with a whole trace."""
    from reasondistill.tasks import load_task
    metrics = json.loads((run_dir / "metrics.json").read_text())
    label = labels(run_dir, metrics)
    task = label["task"].removeprefix("synthetic/").split(":")[0]
    if ":long" not in label["task"] or task not in STATES or metrics.get("think_budget") is not None:
        return None
    examples = {ex.id: ex for ex in load_task(metrics["data"], "test", n=metrics["n_requested"], seed=metrics["seed"])}
    rows = [json.loads(line) for line in (run_dir / "predictions.jsonl").read_text().splitlines()]
    if any(r["id"] not in examples for r in rows):
        raise UserError(f"{run_dir}: predictions name questions its test set does not have")
    audits = [audit_question(task, examples[r["id"]], r["text"]) for r in rows]
    right = [a for a in audits if a["first_pass_right"]]
    return {**label, "n": len(rows), "accuracy": metrics["accuracy"],
            "first_pass_right": mean(a["first_pass_right"] for a in audits),
            "concludes_gold": mean(a["concludes_gold"] for a in audits),
            "lost_after_right_first_pass": (mean(not a["concludes_gold"] for a in right) if right else None)}


def summarise(cells: list[dict]) -> list[dict]:
    """Mean and spread over seeds per task, setting and method."""
    groups = defaultdict(list)
    for c in cells:
        groups[(c["task"], c["hallucination"], c["method"])].append(c)
    rows = []
    for (task, h, method), group in groups.items():
        row = {"task": task, "hallucination": h, "method": method, "seeds": len(group)}
        for key in ("accuracy", "first_pass_right", "concludes_gold", "lost_after_right_first_pass"):
            values = [c[key] for c in group]
            row[key] = [round(x, 4) for x in spread(values)] if any(v is not None for v in values) else None
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="compare or run folders (runs/bench/long-...)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "trace-audit-long.json")
    args = parser.parse_args()
    cells = []
    for folder in args.folders:
        if not folder.is_dir():
            raise UserError(f"{folder} is not a folder")
        for predictions in sorted(folder.rglob("predictions.jsonl")):
            if (predictions.parent / "metrics.json").exists():
                cells += [c for c in [audit_cell(predictions.parent)] if c]
    if not cells:
        raise UserError("no evaluated long-trace cells under " + ", ".join(map(str, args.folders)))
    save_result(args.out, {"kind": "trace-audit", **provenance("trace_audit.py"), "rows": summarise(cells),
                           "cells": cells})
    return 0


if __name__ == "__main__":
    run_main(main, __file__)
