"""White-box distillation rows of the synthetic suite: students with and without a teacher's logits.

Does learning from the teacher's token distributions help a small student beyond its sampled
text, and does it help pre-thinking and PST alike? Two teachers (``tiny`` LLaMAs, one trained in
each layout: pre_thinking's ``x -> r -> y`` and post_thinking's ``x -> y -> r``, on clean coin
flips) teach ``mini`` students through ``compare``: pre_thinking and pst, each without KD and with
forward-KL KD from the teacher of its layout, at hallucination 0 and 0.4.

    python bench/kd_quality.py            # about 6 minutes on 2 CPU cores
    python bench/kd_quality.py --smoke    # a few steps, to check that it runs
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _table  # noqa: E402
from quality import machine  # noqa: E402

TASK = "synthetic/coin_flip"
FULL = {"teacher_steps": 400, "student_steps": 300, "n_train": 400, "n_test": 100}
SMOKE = {"teacher_steps": 10, "student_steps": 5, "n_train": 32, "n_test": 8}


def train_teacher(layout: str, out: Path, p: dict) -> Path:
    """A ``tiny`` teacher in ``layout``'s sequence order; reused when already trained."""
    from reasondistill import api
    if not (out / "reasondistill.json").exists():
        api.train(layout, TASK, out, student="tiny", n=1000,
                  training={"max_steps": p["teacher_steps"], "batch_size": 32, "lr": 3e-3, "checkpoint_every": 0})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--runs", default="runs/bench/kd")
    parser.add_argument("--out", help="results JSON (default bench/results/quality-kd.json)")
    args = parser.parse_args()
    p = SMOKE if args.smoke else FULL
    runs = Path(args.runs + ("-smoke" if args.smoke else ""))

    from reasondistill import api, compare
    from reasondistill.io import atomic_write_json
    from reasondistill.report.grid import versions
    started = time.perf_counter()
    teachers = {layout: str(train_teacher(layout, runs / f"teacher-{layout}", p))
                for layout in ("pre_thinking", "post_thinking")}
    teacher_acc = {layout: api.evaluate(path, TASK, n=p["n_test"], progress=False)["accuracy"]
                   for layout, path in teachers.items()}
    kd = {"kd_loss": "forward_kl", "kd_weight": 1.0}
    config = {
        "out": str(runs / "grid"), "title": "White-box KD on synthetic coin flips", "student": "mini",
        "methods": ["pre_thinking",
                    {"name": "pre_thinking+kd", "method": "pre_thinking",
                     "options": {"teacher_model": teachers["pre_thinking"], **kd}},
                    "pst",
                    {"name": "pst+kd", "method": "pst", "options": {"teacher_model": teachers["post_thinking"], **kd}}],
        "tasks": [TASK], "hallucination": [0.0, 0.4], "seeds": [0], "n_train": p["n_train"], "n_test": p["n_test"],
        "training": {"max_steps": p["student_steps"], "batch_size": 32, "lr": 3e-3, "checkpoint_every": 0,
                     "log_every": 10},
    }
    results = compare(config)
    wall = time.perf_counter() - started
    record = {"kind": "quality", "suite": "kd", "smoke": args.smoke, "date": time.strftime("%Y-%m-%d"),
              "command": shlex.join(["python", "bench/kd_quality.py", *sys.argv[1:]]), "machine": machine(),
              "versions": versions(), "wall_seconds": round(wall, 1), "teachers": teachers,
              "teacher_accuracy": teacher_acc, "complete": results["complete"], "config": results["config"],
              "report": results.get("report"), "rows": results["rows"]}
    out = Path(args.out) if args.out else (runs / "quality.json" if args.smoke else HERE / "results" / "quality-kd.json")
    atomic_write_json(out, record)
    print()
    print(f"teachers (tiny, {p['teacher_steps']} steps, clean data): accuracy {teacher_acc}")
    print(_table.render(record))
    print(f"\nwrote {out}; {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
