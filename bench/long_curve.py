"""The long suite's headline figure: accuracy against time to answer, one panel per task, from the
committed long-trace results.

    python bench/long_curve.py      # writes bench/results/quality-long-time-curve.png

Each task's column of the long grid ran as its own reduced run (each its own student and steps),
so no single compare report draws them side by side; this joins their rows at one hallucination
rate and draws them with the report's own figure (``plot_time_curve``: seed spread on both axes,
a think-first method's budget rows joined into a curve).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import run_main

from reasondistill.errors import UserError

RESULTS = ["quality-long.json", "quality-long-arithmetic.json", "quality-long-letters.json",
           "quality-long-tracking.json"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="*", type=Path, default=[HERE / "results" / name for name in RESULTS],
                    help="long-suite result files (default: the four committed task runs)")
    ap.add_argument("--hallucination", type=float, default=0.0, help="the rate whose rows are drawn")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "quality-long-time-curve.png")
    args = ap.parse_args()
    from reasondistill.report.plots import plot_time_curve
    rows = []
    for path in args.results:
        if not path.is_file():
            raise UserError(f"no result file {path}: run its long-suite command first (bench/README.md)")
        rows += [r for r in json.loads(path.read_text())["rows"] if r["hallucination"] == args.hallucination]
    if not rows:
        raise UserError(f"no rows at hallucination {args.hallucination:g} in {', '.join(map(str, args.results))}")
    plot_time_curve(rows, args.out)
    print(f"wrote {args.out} ({len(rows)} runs, {len({r['task'] for r in rows})} tasks)")
    return 0


if __name__ == "__main__":
    run_main(main, __file__)
