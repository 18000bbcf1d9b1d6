"""The HTML report: one self-contained file (figures inlined as base64 PNG, no scripts, no network),
plus the same PNGs beside it for slides and papers.

Rows come from ``results.json`` written by ``compare``; a folder without one (runs trained one by
one with ``reasondistill train`` and ``eval``) is scanned for run folders instead, so any set of
runs can be reported.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from pathlib import Path

from ..errors import UserError
from ..io import atomic_write_text, read_json
from ..runfolder import CALL_FILE, METRICS_FILE, result_row, task_slug
from .plots import draw_all, group, setting_label, spread

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1150px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
.meta { color: #666; font-size: 0.9em; }
figure { margin: 12px 0 24px; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
pre { background: #f7f7f7; padding: 8px; font-size: 0.8em; overflow-x: auto; }
"""

CAPTIONS = {
    "accuracy.png": "Bars are means over seeds, whiskers one standard deviation. Dashed: random guessing; "
                    "dotted: always giving the training set's most common answer.",
    "tradeoff.png": "Each point is a method on a task (one setting), mean over seeds. Time is wall-clock per "
                    "question until the answer is complete (answer-first methods stop there).",
    "time_curve.png": "One panel per task and setting; whiskers are one standard deviation over seeds on both "
                      "axes. Rows of one method at several thinking budgets are joined in order of time.",
    "hallucination.png": "Training rationales corrupted at the given rate (a wrong step or a wrong conclusion); "
                         "the test set is clean and gold answers are always right.",
    "losses.png": "Total loss differs by method (different terms); answer cross-entropy is the term all share.",
}


RESULTS_FILE = "results.json"  # written by compare (grid.py)
ROW_KEYS = ("task", "method", "accuracy")  # what every figure and table reads


def check_results(results, path: Path) -> list[dict]:
    """The rows of a results.json, or a one-line error saying what is wrong with its shape."""
    if not isinstance(results, dict) or not isinstance(results.get("rows", []), list):
        raise UserError("expected an object with a 'rows' list (written by compare)", path=str(path))
    rows = results.get("rows", [])
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"row {i} is not an object", path=str(path))
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise UserError(f"row {i} lacks {', '.join(repr(k) for k in missing)}", path=str(path))
    return rows


def load_rows(run_dir: str | Path) -> tuple[list[dict], dict]:
    """(rows, results) from ``results.json``, or rows scanned from the run folders under ``run_dir``."""
    root = Path(run_dir)
    if not root.is_dir():
        raise UserError("run folder not found", path=str(root))
    if (root / RESULTS_FILE).exists():
        results = read_json(root / RESULTS_FILE)
        return check_results(results, root / RESULTS_FILE), results
    rows = []
    for metrics_path in sorted(root.rglob(METRICS_FILE)):
        run = metrics_path.parent
        if not (run / CALL_FILE).exists():
            continue
        config, metrics = read_json(run / CALL_FILE), read_json(metrics_path)
        labels = {"task": task_slug(str(config.get("data", "?"))), "method": metrics.get("method", "?"),
                  "base_method": config.get("method"), "hallucination": config.get("hallucination", 0.0),
                  "seed": config.get("seed", 0), "keep": config.get("keep", "all")}
        rows.append(result_row(run, root, labels=labels, config=config, extra={"majority": None}))
    if not rows:
        raise UserError(f"nothing to report: no {RESULTS_FILE} and no evaluated run folders", path=str(root))
    return rows, {"rows": rows}


def _fmt(value, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def consistency_cell(runs: list[dict]) -> str:
    """Consistency with its denominator, the share of answered rationales that conclude: alone it
    compares methods whose rationales conclude 25% and 100% of the time as if alike."""
    concludes = spread([r.get("rationale_concludes") for r in runs])[0]
    if concludes is None or math.isnan(concludes):
        return "–"
    return f"{_fmt(spread([r.get('consistency') for r in runs])[0], 2)} ({concludes:.2f})"


def means_table(rows: list[dict]) -> str:
    """HTML table of means over seeds, one line per task, method and setting."""
    head = ["task", "method", "setting", "seeds", "accuracy", "± std", "answered", "chance", "majority",
            "tokens to answer", "ms to answer", "ms total", "consistency (concludes)", "train s"]
    lines = ["<table><tr>" + "".join(f'<th class="{"l" if i < 3 else ""}">{h}</th>' for i, h in enumerate(head))
             + "</tr>"]
    labelled = [{**r, "_s": setting_label(r, rows)} for r in rows]
    for (task, method, setting), runs in group(labelled, ("task", "method", "_s")).items():
        acc, sd = spread([r["accuracy"] for r in runs])
        cells = [task, method, setting or "–", str(len(runs)), _fmt(acc), _fmt(sd),
                 _fmt(spread([r.get("answered") for r in runs])[0], 2), _fmt(runs[0].get("chance"), 2),
                 _fmt(spread([r.get("majority") for r in runs])[0], 2),
                 _fmt(spread([r["tokens_to_answer"] for r in runs])[0], 1),
                 _fmt(spread([r["ms_to_answer"] for r in runs])[0], 2),
                 _fmt(spread([r["ms_total"] for r in runs])[0], 2),
                 consistency_cell(runs),
                 _fmt(spread([r.get("train_seconds") for r in runs])[0], 0)]
        lines.append("<tr>" + "".join(f'<td class="{"l" if i < 3 else ""}">{html.escape(c)}</td>'
                                      for i, c in enumerate(cells)) + "</tr>")
    return "\n".join(lines + ["</table>"])


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def write_report(run_dir: str | Path, out: str | Path | None = None, *, results: dict | None = None) -> Path:
    """Draw the figures into ``<run_dir>/plots/`` and write ``<run_dir>/report.html`` (or ``out``).
    ``compare`` hands its ``results`` over; otherwise they are read from the folder."""
    root = Path(run_dir)
    rows, results = (results["rows"], results) if results is not None else load_rows(root)
    if not rows:
        raise UserError(f"nothing to report yet: {RESULTS_FILE} has no finished cells", path=str(root))
    out = Path(out) if out else root / "report.html"
    figures = draw_all(rows, root, out.parent / "plots")
    config = results.get("config") or {}
    title = config.get("title") or f"reasondistill comparison: {root.name}"
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    summary = (f"{len(rows)} runs{'' if results.get('complete', True) else ' (grid not finished)'}: "
               f"{len(methods)} methods × {len(tasks)} tasks × {len({r['seed'] for r in rows})} seeds; "
               f"student {config.get('student', '?')}; written {time.strftime('%Y-%m-%d %H:%M')}")
    versions = results.get("versions")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{html.escape(summary)}"
             + (f"<br>{html.escape(', '.join(f'{k} {v}' for k, v in versions.items()))}" if versions else "")
             + "</p>"]
    for fig_title, png in figures:
        parts.append(f"<h2>{html.escape(fig_title)}</h2><figure><img alt='{html.escape(fig_title)}' "
                     f"src='{data_uri(png)}'><figcaption>{html.escape(CAPTIONS.get(png.name, ''))}</figcaption></figure>")
    parts.append("<h2>Means over seeds</h2>" + means_table(rows))
    if config:
        parts.append("<h2>Configuration</h2><pre>" + html.escape(json.dumps(config, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    atomic_write_text(out, "\n".join(parts) + "\n")
    return out
