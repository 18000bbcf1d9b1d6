"""Markdown tables from the benchmark JSON, and the README refresh.

``python bench/_table.py`` rewrites every table in bench/README.md from bench/results/*.json
(between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` markers, NAME being the JSON file's
stem), so the README never disagrees with the committed results.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"


def _ms(rows: list[dict], key: str) -> tuple[float, float]:
    """Mean and std over seeds of ``key`` (rows without it left out): the report's own ``spread``."""
    from reasondistill.report.plots import spread
    return spread([r.get(key) for r in rows])


def _setting(row: dict, rows: list[dict]) -> str:
    from reasondistill.report.plots import setting_label
    return setting_label(row, rows) or "–"


def quality_table(rows: list[dict]) -> str:
    """Accuracy (mean ± std over seeds): one line per method and setting, one column per task,
    then the floors: chance (random guessing) and the majority answer."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    by = defaultdict(list)
    for r in rows:
        by[(_setting(r, rows), r["method"], r["task"])].append(r)
    settings = list(dict.fromkeys(_setting(r, rows) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    seeds = len({r["seed"] for r in rows})
    lines = [f"| setting | method | {' | '.join(tasks)} |", "|---|---|" + "---:|" * len(tasks)]
    for setting in settings:
        for method in methods:
            cells = []
            for task in tasks:
                runs = by.get((setting, method, task))
                if not runs:
                    cells.append("")
                    continue
                m, s = _ms(runs, "accuracy")
                cells.append(f"{m:.3f} ± {s:.3f}" if seeds > 1 else f"{m:.3f}")
            if any(cells):
                lines.append(f"| {setting} | {method} | {' | '.join(cells)} |")
    chance = [next((f"{r['chance']:.2f}" for r in rows if r["task"] == t and r.get("chance") is not None), "n/a")
              for t in tasks]
    majority = [f"{_ms([r for r in rows if r['task'] == t], 'majority')[0]:.3f}" for t in tasks]
    lines.append(f"| floor | chance | {' | '.join(chance)} |")
    lines.append(f"| floor | majority answer | {' | '.join(majority)} |")
    return "\n".join(lines)


def cost_table(rows: list[dict]) -> str:
    """What an answer and a run cost, per method, averaged over every task and setting."""
    lines = ["| method | tokens to answer | ms to answer | tokens total | ms total | consistency | train s / run |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        vals = [_ms(mine, k)[0] for k in ("tokens_to_answer", "ms_to_answer", "tokens_total", "ms_total",
                                           "consistency", "train_seconds")]
        lines.append(f"| {method} | {vals[0]:.1f} | {vals[1]:.2f} | {vals[2]:.1f} | {vals[3]:.2f} | "
                     f"{'–' if vals[4] != vals[4] else f'{vals[4]:.2f}'} | {'–' if vals[5] != vals[5] else f'{vals[5]:.0f}'} |")
    return "\n".join(lines)


def side_by_side_table(rows: list[dict]) -> str:
    """Accuracy and time to answer of every row, side by side, each with its spread over seeds, and
    time to answer as a multiple of pre_thinking's in the same task and setting."""
    by = defaultdict(list)
    for r in rows:
        by[(r["task"], _setting(r, rows), r["method"])].append(r)
    lines = ["| task | setting | method | accuracy | answered | tokens to answer | ms to answer | × pre_thinking |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for (task, setting, method), runs in by.items():
        acc, acc_sd = _ms(runs, "accuracy")
        ms, ms_sd = _ms(runs, "ms_to_answer")
        base = by.get((task, setting, "pre_thinking"))
        ratio = f"{ms / _ms(base, 'ms_to_answer')[0]:.3f}×" if base else "–"
        lines.append(f"| {task} | {setting} | {method} | {acc:.3f} ± {acc_sd:.3f} | {_ms(runs, 'answered')[0]:.2f} | "
                     f"{_ms(runs, 'tokens_to_answer')[0]:.1f} | {ms:.2f} ± {ms_sd:.2f} | {ratio} |")
    return "\n".join(lines)


def spread_verdicts(rows: list[dict]) -> str:
    """Per task and setting: the best row, and each other row's gap to it, marked as beyond the
    seed spread (gap > the two rows' standard deviations added) or within it."""
    by = defaultdict(list)
    for r in rows:
        by[(r["task"], _setting(r, rows), r["method"])].append(r)
    lines = []
    for task, setting in dict.fromkeys((t, s) for t, s, _ in by):
        stats = {m: _ms(runs, "accuracy") for (t, s, m), runs in by.items() if (t, s) == (task, setting)}
        best = max(stats, key=lambda m: stats[m][0])
        parts = []
        for m, (mean_, sd) in sorted(stats.items(), key=lambda kv: -kv[1][0]):
            if m == best:
                continue
            gap = stats[best][0] - mean_
            parts.append(f"{m} −{gap:.3f} ({'beyond' if gap > stats[best][1] + sd else 'within'} spread)")
        lines.append(f"- {task}, {setting}: best **{best}** {stats[best][0]:.3f}; " + "; ".join(parts))
    return "\n".join(lines)


def _of(rows: list[dict], method: str, h: float, key: str) -> tuple[float, float]:
    """Mean and std over seeds of ``key`` for one method at one hallucination rate."""
    return _ms([r for r in rows if r["method"] == method and r["hallucination"] == h], key)


def long_goals(rows: list[dict]) -> str:
    """The long suite's two claims, measured: answer-first time to answer against pre_thinking's
    (goal ≤ 0.02×), and the accuracy each loses from the cleanest to the most hallucinated setting
    (goal: PT/PST lose at most a third of what pre_thinking loses). The second is judged only
    where pre_thinking's loss is larger than its seed spread at the two rates added: a smaller
    loss is no loss to compare with."""
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        mine = [r for r in rows if r["task"] == task]
        rates = sorted({r["hallucination"] for r in mine})
        lo, hi = rates[0], rates[-1]
        (pre_lo, pre_lo_sd), (pre_hi, pre_hi_sd) = (_of(mine, "pre_thinking", h, "accuracy") for h in (lo, hi))
        pre_drop = pre_lo - pre_hi
        for method in ("post_thinking", "pst"):
            if not any(r["method"] == method for r in mine) or not any(r["method"] == "pre_thinking" for r in mine):
                continue
            ratio = _of(mine, method, lo, "ms_to_answer")[0] / _of(mine, "pre_thinking", lo, "ms_to_answer")[0]
            drop = _of(mine, method, lo, "accuracy")[0] - _of(mine, method, hi, "accuracy")[0]
            if lo == hi:
                verdict = None
            elif pre_drop <= 0:
                verdict = "n/a, pre_thinking lost nothing"
            elif pre_drop <= pre_lo_sd + pre_hi_sd:
                verdict = "n/a, pre_thinking's loss is within its seed spread"
            else:
                verdict = "met" if drop <= pre_drop / 3 else "**not met**"
            robustness = ("hallucination goal: n/a, one rate" if verdict is None else
                          f"accuracy lost from h={lo:g} to h={hi:g}: {drop:+.3f} against pre_thinking's "
                          f"{pre_drop:+.3f} (goal ≤ a third: {verdict})")
            lines.append(f"- {task}, {method}: time to answer {ratio:.4f}× pre_thinking's at h={lo:g} "
                         f"(goal ≤ 0.02×: {'met' if ratio <= 0.02 else '**not met**'}); {robustness}")
    return "\n".join(lines)


def speed_table(result: dict) -> str:
    """Every speed figure as a ratio, its goal, and whether it is met."""
    lines = ["| measure | ratio | goal | met |", "|---|---:|---:|:---:|"]
    for g in result.get("goals", []):
        value = "n/a" if g["value"] is None else f"{g['value']:.3f}×"
        met = "n/a" if g["met"] is None else ("yes" if g["met"] else "**no**")
        lines.append(f"| {g['name']} | {value} | {g['op']} {g['goal']}× | {met} |")
    return "\n".join(lines)


def memory_table(result: dict) -> str:
    """Peak memory and tokens/s of one step, per vocabulary and length, ours beside plain and TRL."""
    impls = list(dict.fromkeys(r["impl"] for r in result["rows"]))
    unit = "peak RSS GB" if result.get("device") == "cpu" else "peak GiB"
    lines = ["| vocab | seq | " + " | ".join(f"{i} {unit}" for i in impls) + " | ours / TRL | "
             + " | ".join(f"{i} tok/s" for i in impls) + " |", "|---:|---:|" + "---:|" * (2 * len(impls) + 1)]
    by = {(r["impl"], r["vocab"], r["seq"]): r for r in result["rows"]}
    for seq in dict.fromkeys(r["seq"] for r in result["rows"]):
        for vocab in dict.fromkeys(r["vocab"] for r in result["rows"]):
            cells = [by.get((i, vocab, seq), {}) for i in impls]
            mem = [f"{c['peak_gb']:.2f}" if c.get("status") == "ok" else c.get("status", "–") for c in cells]
            speed = [f"{c['tokens_per_s']:.0f}" if c.get("status") == "ok" else "–" for c in cells]
            ours, trl = by.get(("ours", vocab, seq), {}), by.get(("trl", vocab, seq), {})
            ratio = (f"{ours['peak_gb'] / trl['peak_gb']:.2f}×" if ours.get("status") == trl.get("status") == "ok"
                     else "–")
            lines.append(f"| {vocab} | {seq} | {' | '.join(mem)} | {ratio} | {' | '.join(speed)} |")
    for g in result.get("goals", []):
        value = "n/a" if g["value"] is None else f"{g['value']:.2f}{' GB' if g['unit'] == 'GB' else '×'}"
        met = "n/a" if g["met"] is None else ("yes" if g["met"] else "**no**")
        lines.append(f"\nGoal: {g['name']}: {value} ({g['op']} {g['goal']}{' GB' if g['unit'] == 'GB' else '×'}): "
                     f"{met}{' (' + g['note'] + ')' if g.get('note') else ''}")
    return "\n".join(lines)


def header(result: dict) -> str:
    if result.get("smoke"):
        return "_smoke run: it shows that the benchmark runs; its numbers mean nothing_"
    machine = result.get("machine", {})
    versions = ", ".join(f"{k} {v}" for k, v in result.get("versions", {}).items())
    when = result.get("date", "?")
    # wall: this invocation; cells: every cell's own time summed, also cells an earlier invocation
    # finished (a resumed run) and cells that ran side by side (--jobs), so the two can differ
    wall, cells = result.get("wall_seconds"), result.get("cells_seconds")
    times = [f"{wall / 60:.1f} min wall"] if wall is not None else []
    times += [f"{cells / 60:.1f} min of cells"] if cells is not None else []
    return (f"_{when}; {machine.get('description', '?')}; {versions}; "
            f"{''.join(t + '; ' for t in times)}`{result.get('command', '?')}`_")


def settings_table(result: dict) -> str:
    """The settings search log: one line per single-cell run, in the order they were run."""
    lines = ["| task | method | student | n train | steps | seed | accuracy | majority | 3× majority | s | note |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["runs"]:
        met = r["accuracy"] >= min(0.8, 3 * r["majority"])
        secs = "–" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['task'].removeprefix('synthetic/')} | {r['method']} | {r['student']} | {r['n_train']} | "
                     f"{r['max_steps']} | {r.get('seed', 0)} | {'**' if met else ''}{r['accuracy']:.3f}{'**' if met else ''} | "
                     f"{r['majority']:.3f} | {3 * r['majority']:.3f} | "
                     f"{secs} | {r.get('note', '')} |")
    machine = result["runs"][-1]["machine"]["description"] if result["runs"] else "?"
    return (f"_{machine}, shared with other jobs (times are not comparable between rows); test sets of "
            f"{', '.join(sorted({str(r['n_test']) for r in result['runs']}))} questions; bold: at least 0.8 or 3× "
            "the majority answer_\n\n" + "\n".join(lines))


def trace_audit_table(result: dict) -> str:
    """Where think-first students go wrong on long traces (bench/trace_audit.py), mean ± std over seeds."""
    def cell(pair):
        return "–" if pair is None else f"{pair[0]:.3f} ± {pair[1]:.3f}"
    lines = ["| task | h | method | accuracy | first pass right | final line gold | lost after a right first pass |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['task'].removeprefix('synthetic/')} | {r['hallucination']:g} | {r['method']} | "
                     f"{cell(r['accuracy'])} | {cell(r['first_pass_right'])} | {cell(r['concludes_gold'])} | "
                     f"{cell(r['lost_after_right_first_pass'])} |")
    return header(result) + "\n\n" + "\n".join(lines)


def render(result: dict) -> str:
    """The README block for one results file."""
    if result.get("kind") == "memory":
        notes = "".join(f"\n\nNote: {n}" for n in result.get("notes", []))
        return header(result) + "\n\n" + memory_table(result) + notes
    if result.get("kind") == "settings-search":
        return settings_table(result)
    if result.get("kind") == "trace-audit":
        return trace_audit_table(result)
    if result.get("kind") == "speed":
        notes = "".join(f"\n\nNote: {n}" for n in result.get("notes", []))
        return header(result) + "\n\n" + speed_table(result) + notes
    rows = result["rows"]
    text = (header(result) + "\n\nAccuracy on the held-out test set (mean ± std over seeds):\n\n" + quality_table(rows)
            + "\n\nCost per answer and per training run (mean over tasks and settings):\n\n" + cost_table(rows))
    if len({r["seed"] for r in rows}) > 1:
        text += ("\n\nAccuracy and time to answer side by side (mean ± std over seeds):\n\n" + side_by_side_table(rows)
                 + "\n\nGaps to the best row, against the seed spread:\n\n" + spread_verdicts(rows))
    if result.get("suite") == "long":
        text += "\n\nThe long suite's goals:\n\n" + long_goals(rows)
    return text


def update_readme(readme: Path = README, results_dir: Path = RESULTS) -> list[str]:
    """Replace each marked block whose results file exists; returns the names refreshed."""
    text = readme.read_text()
    done = []
    for path in sorted(results_dir.glob("*.json")):
        name = path.stem
        pattern = re.compile(rf"(<!-- table:{re.escape(name)} -->\n).*?\n?(<!-- /table:{re.escape(name)} -->)",
                             re.DOTALL)  # an empty block (a new marker pair) matches too
        match = pattern.search(text)
        if match:
            block = render(json.loads(path.read_text()))
            text = text[:match.end(1)] + block + "\n" + text[match.start(2):]
            done.append(name)
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(text)
    tmp.replace(readme)
    return done


if __name__ == "__main__":
    names = update_readme()
    print(f"refreshed {len(names)} table(s) in {README}: {', '.join(names) or 'none'}", file=sys.stderr)
