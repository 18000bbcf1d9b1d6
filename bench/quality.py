"""Quality benchmark: accuracy, time to answer and robustness of every method, side by side.

    python bench/quality.py --suite synthetic          # ~30 min on 2 CPU cores
    python bench/quality.py --suite real               # zero-shot-cot teacher files (../shared/data)
    python bench/quality.py --suite long               # reasoning-model traces: accuracy and time to answer
    python bench/quality.py --suite synthetic --smoke  # a tiny slice, to check that it runs
    python bench/quality.py --table                    # refresh bench/README.md from bench/results

Each suite is a ``reasondistill compare`` config in bench/configs/. Runs go to runs/bench/<suite>
(re-running skips finished cells, so a killed benchmark resumes); the results, with the machine,
the versions and the command, go to bench/results/quality-<suite>.json, and a table is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _table
from _common import provenance, run_main, save_result

from reasondistill.errors import UserError

SMOKE = {"seeds": [0], "n_train": 64, "n_test": 16,
         "training": {"max_steps": 20, "batch_size": 16, "lr": 0.003, "checkpoint_every": 0, "log_every": 5}}



def suite_config(suite: str, smoke: bool, overrides: dict | None = None, gpu: bool = False) -> dict:
    """The suite's YAML, with data_root from $REASONDISTILL_SHARED_DATA if set; ``smoke`` keeps one
    task, the first two methods and a few steps; ``overrides`` replace top-level keys (a smaller
    grid on a busy day: fewer seeds or rates; the command is recorded with the results); ``gpu``
    applies the YAML's ``gpu:`` section (bigger students, more steps) over the rest."""
    import yaml

    from reasondistill.report.grid import load_config
    path = HERE / "configs" / f"{suite}.yaml"
    raw = yaml.safe_load(path.read_text())
    gpu_section = raw.pop("gpu", None) or {}
    if gpu:
        if not gpu_section:
            raise UserError(f"{path.name} has no gpu: section")
        training = {**raw.get("training", {}), **gpu_section.pop("training", {})}
        raw.update(gpu_section, training=training, out=raw["out"] + "-gpu")
    if suite == "real" and os.environ.get("REASONDISTILL_SHARED_DATA"):
        raw["data_root"] = os.environ["REASONDISTILL_SHARED_DATA"]
    if raw.get("data_root") and not Path(raw["data_root"]).is_absolute():
        raw["data_root"] = str((path.parent / raw["data_root"]).resolve())
    for key, value in (overrides or {}).items():
        if key in ("max_steps", "batch_size", "max_length"):
            raw["training"] = {**raw.get("training", {}), key: value}
        elif key == "methods":  # a row of the config by its name (with its options), else a plain method
            rows = {(m if isinstance(m, str) else m.get("name") or m.get("method")): m for m in raw["methods"]}
            raw[key] = [rows.get(name, name) for name in value]
        else:
            raw[key] = value
    if smoke:
        raw.update(SMOKE, tasks=raw["tasks"][:1], methods=raw["methods"][:1] + raw["methods"][3:4],
                   hallucination=raw.get("hallucination", [0.0])[::2][:2], out=raw["out"] + "-smoke")
    return load_config(raw, base_dir=path.parent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=["synthetic", "real", "long"])
    parser.add_argument("--smoke", action="store_true", help="one task, two methods, a few steps")
    parser.add_argument("--out", help="results JSON (default bench/results/quality-<suite>.json; "
                                      "smoke: runs/bench/<suite>-smoke/quality.json)")
    parser.add_argument("--runs", help="run folder (default: the config's out)")
    parser.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
    parser.add_argument("--hallucination", type=float, nargs="+", help="override the config's rates")
    parser.add_argument("--max-steps", type=int, help="override training.max_steps")
    parser.add_argument("--tasks", nargs="+", help="override the config's tasks")
    parser.add_argument("--batch-size", type=int, help="override training.batch_size")
    parser.add_argument("--max-length", type=int, help="override training.max_length (longer traces)")
    parser.add_argument("--student", help="override the config's student (e.g. mini:chars)")
    parser.add_argument("--n-train", type=int, help="override the config's n_train")
    parser.add_argument("--n-test", type=int, help="override the config's n_test")
    parser.add_argument("--methods", nargs="+", help="override the config's rows: names of its rows (e.g. "
                                                     "softcot-main softcot) or plain methods")
    parser.add_argument("--keep", nargs="+", choices=["correct", "all"], help="override the config's rationale filters")
    parser.add_argument("--gpu", action="store_true", help="the config's gpu: settings, cells in parallel processes")
    parser.add_argument("--jobs", type=int, help="processes at once, one per task and seed (default: 8 with "
                        "--gpu, else 1; on CPU give each OMP_NUM_THREADS=1)")
    parser.add_argument("--table", action="store_true", help="only refresh bench/README.md from bench/results")
    args = parser.parse_args()
    if args.table:
        print("refreshed:", ", ".join(_table.update_readme()) or "nothing")
        return 0
    if not args.suite:
        parser.error("--suite is required (or --table)")

    from reasondistill import compare
    overrides = {k: v for k, v in (("seeds", args.seeds), ("hallucination", args.hallucination),
                                   ("max_steps", args.max_steps), ("batch_size", args.batch_size),
                                   ("max_length", args.max_length), ("tasks", args.tasks),
                                   ("student", args.student), ("methods", args.methods), ("keep", args.keep),
                                   ("n_train", args.n_train), ("n_test", args.n_test)) if v is not None}
    cfg = suite_config(args.suite, args.smoke, overrides, gpu=args.gpu)
    runs = Path(args.runs or cfg["out"])
    started = time.perf_counter()
    jobs = args.jobs or (8 if args.gpu else 1)
    if jobs > 1:
        from _parallel import compare_parallel
        results = compare_parallel(cfg, runs, jobs)
    else:
        results = compare(cfg, out=runs)
    wall = time.perf_counter() - started
    name = f"quality-{args.suite}" + ("-gpu" if args.gpu else "")
    out = Path(args.out) if args.out else (runs / "quality.json" if args.smoke else HERE / "results" / f"{name}.json")
    record = {"kind": "quality", "suite": args.suite, "smoke": args.smoke, **provenance("quality.py"),
              "wall_seconds": round(wall, 1),
              "cells_seconds": round(sum(r.get("seconds") or 0.0 for r in results["rows"]), 1),
              "complete": results["complete"],
              "config": results["config"], "report": results.get("report"), "rows": results["rows"]}
    print()
    save_result(out, record)
    print(f"\nwrote {out}; report {results.get('report')}; {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    run_main(main, __file__)
