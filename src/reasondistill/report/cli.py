"""``reasondistill compare`` and ``reasondistill report``: thin wrappers over the report API,
with their flags made from the option definitions in config.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..options import add_flags, parse_command
from .config import CompareOptions, ReportOptions


def cmd_compare(args: argparse.Namespace) -> None:
    from ..errors import UserError
    from .grid import compare
    if not getattr(args, "config", None):
        raise UserError("compare needs --config GRID.yaml (methods, tasks, ...)")
    flags = {k: v for k, v in vars(args).items() if k not in ("func", "config", "command")}
    results = compare(args.config, **flags)  # flags win over the file's keys
    rows = results["rows"]
    out = Path(results["config"]["out"])
    print(f"\n{len(rows)} runs; results in {out / 'results.json'}"
          + (f", report in {results['report']}" if results.get("report") else ""))


def cmd_report(args: argparse.Namespace) -> None:
    from . import report
    o = parse_command(ReportOptions, args)
    path = report(o.run_dir, out=o.out)
    print(f"wrote {path} (figures in {path.parent / 'plots'})")


def register(sub) -> None:
    p = sub.add_parser("compare", help="train and evaluate methods x tasks x hallucination x seeds, then report")
    add_flags(p, CompareOptions)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="HTML report and PNG plots from a compare folder or run folders")
    add_flags(p, ReportOptions, config=False)
    p.set_defaults(func=cmd_report)
