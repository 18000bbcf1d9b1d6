"""Run a compare grid as several processes at once (the GPU variant of the suites).

The grid is cut into parts that share nothing: one part per (task, seed), since a row's
``run:NAME`` references stay inside its own task, rate and seed. Each part is an ordinary
``compare`` run in ``<root>/parts/<task>-s<seed>`` (so a killed benchmark resumes part by part,
cell by cell); when all have stopped, their rows are merged into ``<root>/results.json`` and the
report is written over the whole grid.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

PART = ("import sys, yaml; from reasondistill import compare; "
        "compare(yaml.safe_load(open(sys.argv[1])), out=sys.argv[2], report=False, progress=False)")


def parts(cfg: dict) -> list[tuple[str, dict]]:
    """(folder name, config) per task and seed of the grid."""
    from reasondistill.report.grid import task_slug
    return [(f"{task_slug(task)}-s{seed}", {**cfg, "tasks": [task], "seeds": [seed]})
            for seed in cfg["seeds"] for task in cfg["tasks"]]


def compare_parallel(cfg: dict, root: Path, jobs: int) -> dict:
    """Every part of ``cfg``'s grid, ``jobs`` processes at a time; the merged results dict."""
    from reasondistill.io import atomic_write_json, read_json
    from reasondistill.report.grid import RESULTS_FILE, versions
    from reasondistill.report.html import write_report
    pending, running, failed = parts(cfg), [], []
    started = time.perf_counter()
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name, part_cfg = pending.pop(0)
                part_root = root / "parts" / name
                part_root.mkdir(parents=True, exist_ok=True)
                (part_root / "part.yaml").write_text(yaml.safe_dump(part_cfg, sort_keys=False))
                log = open(part_root / "part.log", "a")
                running.append((name, log, subprocess.Popen(
                    [sys.executable, "-c", PART, str(part_root / "part.yaml"), str(part_root)],
                    stdout=log, stderr=subprocess.STDOUT)))
            time.sleep(2)
            for item in [r for r in running if r[2].poll() is not None]:
                running.remove(item)
                item[1].close()
                if item[2].returncode:
                    failed.append(item[0])
                print(f"part {item[0]}: {'failed, see its part.log' if item[2].returncode else 'done'} "
                      f"({(time.perf_counter() - started) / 60:.1f} min)", flush=True)
    except KeyboardInterrupt:  # a time cap (timeout --signal=INT) or ^C: keep what finished
        print("interrupted: merging the finished cells; re-run to resume", flush=True)
        for name, log, proc in running:
            proc.wait()
            log.close()
            failed.append(name)
    rows, complete = [], not failed
    for name, _ in parts(cfg):
        results_file = root / "parts" / name / RESULTS_FILE
        part = read_json(results_file) if results_file.exists() else {"rows": [], "complete": False}
        complete = complete and part.get("complete", False)
        rows += [{**row, "run_dir": f"parts/{name}/{row['run_dir']}"} for row in part["rows"]]
    results = {"config": cfg, "n_cells": len(rows), "complete": complete, "versions": versions(),
               "rows": rows, "seconds": round(time.perf_counter() - started, 1), "failed_parts": failed}
    atomic_write_json(root / RESULTS_FILE, results)
    if rows:
        results["report"] = str(write_report(root))
    return results
