"""``reasondistill compare`` and ``reasondistill report``: thin wrappers over the report API."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_compare(args: argparse.Namespace) -> None:
    from .grid import compare
    results = compare(args.config, out=args.out, report=not args.no_report)
    rows = results["rows"]
    out = Path(results["config"]["out"])
    print(f"\n{len(rows)} runs; results in {out / 'results.json'}"
          + (f", report in {results['report']}" if results.get("report") else ""))


def cmd_report(args: argparse.Namespace) -> None:
    from . import report
    path = report(args.run_dir, out=args.out)
    print(f"wrote {path} (figures in {path.parent / 'plots'})")


def register(sub) -> None:
    p = sub.add_parser("compare", help="train and evaluate methods x tasks x hallucination x seeds, then report")
    p.add_argument("--config", required=True, help="YAML file: methods, tasks, hallucination, seeds, training, ...")
    p.add_argument("--out", help="output folder (overrides the config's 'out')")
    p.add_argument("--no-report", action="store_true", help="write results.json only")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="HTML report and PNG plots from a compare folder or run folders")
    p.add_argument("run_dir", help="folder written by compare (results.json) or holding evaluated runs")
    p.add_argument("--out", help="HTML path (default RUN_DIR/report.html)")
    p.set_defaults(func=cmd_report)
