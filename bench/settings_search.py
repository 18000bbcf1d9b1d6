"""Settings search: the smallest student, tokenizer, data and steps at which a method learns a task.

    python bench/settings_search.py --task arithmetic --method post_thinking --student mini:digits \
        --n-train 1000 --max-steps 400

One cell per call (train, then evaluate on a clean test set of ``--n-test`` questions); the result,
with the exact command, the seconds it took and the task's majority-answer floor, is appended to
bench/results/settings-search.json, so a sequence of short calls builds the search log that
bench/README.md's conclusion quotes. Runs go to runs/settings/<label> (delete it to re-run a label).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from collections import Counter
from pathlib import Path
from statistics import mean

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _tracking_wordings
from _common import provenance, run_main

from reasondistill.options import KeyValueAction

RESULTS = HERE / "results" / "settings-search.json"


def majority_floor(task: str, n_train: int, n_test: int, seed: int) -> float:
    """Accuracy of always giving the training set's most common answer."""
    from reasondistill.tasks import is_correct, load_task
    train = load_task(task, "train", n=n_train, seed=seed)
    test = load_task(task, "test", n=n_test, seed=0)
    common = Counter(ex.answer for ex in train).most_common(1)[0][0]
    return mean(is_correct(common, ex.answer, ex.answer_type) for ex in test)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, help="coin_flip, last_letters, arithmetic, tracking (or a full spec)")
    p.add_argument("--method", default="post_thinking")
    p.add_argument("--student", default="mini", help="tiny size, optionally :digits or :chars")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--max-length", type=int, default=512, help="longest training sequence in tokens (long traces)")
    p.add_argument("--vocab-size", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action=KeyValueAction, default={}, metavar="KEY=VALUE",
                   help="a method option, as train's --option (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    p.add_argument("--label", help="run folder name (default from the settings)")
    p.add_argument("--note", default="", help="what else differs in this run (shown in the table)")
    p.add_argument("--tracking-wording", choices=list(_tracking_wordings.WORDINGS),
                   help="another wording of the tracking rationale (bench/_tracking_wordings.py)")
    args = p.parse_args()

    import torch

    from reasondistill import api
    from reasondistill.io import atomic_write_json, read_json
    torch.set_num_threads(args.threads)
    if args.tracking_wording:
        _tracking_wordings.use(args.tracking_wording)
        args.note = args.note or f'"{args.tracking_wording}" wording'
    task = args.task if "/" in args.task else f"synthetic/{args.task}"
    label = args.label or (f"{task.split('/')[-1]}-{args.method}-{args.student.replace(':', '_')}-n{args.n_train}"
                           f"-s{args.max_steps}-lr{args.lr:g}-seed{args.seed}"
                           + (f"-{args.tracking_wording}" if args.tracking_wording else "")
                           + "".join(f"-{k}{v}" for k, v in sorted(args.option.items())))
    run_dir = Path("runs/settings") / label
    started = time.perf_counter()
    training = {"max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                "max_length": args.max_length, "checkpoint_every": 0, "log_every": 25}
    reused = (run_dir / "metrics.json").exists()  # finished before (a crash while logging): record it
    if reused:
        record, metrics = read_json(run_dir / api.RUN_FILE), read_json(run_dir / "metrics.json")
        train_s = record["train"]["seconds"]
    else:
        record = api.train(args.method, task, run_dir, student=args.student, n=args.n_train, seed=args.seed,
                           method_options=args.option, training=training, vocab_size=args.vocab_size, progress=False)
        train_s = time.perf_counter() - started
        metrics = api.evaluate(run_dir, task, split="test", n=args.n_test, seed=0, progress=False)
    result = {**provenance("settings_search.py"), "label": label, "task": task, "method": args.method,
              "student": args.student, "n_train": args.n_train, "n_test": metrics["n"],
              "max_steps": args.max_steps, "batch_size": args.batch_size, "lr": args.lr,
              "max_length": args.max_length,
              "vocab_size": args.vocab_size, "seed": args.seed, "threads": args.threads,
              "accuracy": round(metrics["accuracy"], 4), "majority": round(majority_floor(task, args.n_train,
                                                                                          args.n_test, args.seed), 4),
              "tokens_to_answer": round(metrics["tokens_to_answer"], 1),
              "final_loss": record["train"].get("final_loss"), "train_seconds": round(train_s, 1),
              "seconds": None if reused else round(time.perf_counter() - started, 1), "reused": reused,
              "options": args.option, "note": args.note}
    with open(RESULTS.with_suffix(".lock"), "w") as lock:  # calls may run side by side
        fcntl.flock(lock, fcntl.LOCK_EX)
        log = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"kind": "settings-search", "runs": []}
        log["runs"].append(result)
        atomic_write_json(RESULTS, log)
    print(f"{label}: accuracy {result['accuracy']:.3f} (majority {result['majority']:.3f}), "
          f"{result['seconds'] or train_s:.0f} s")
    return 0


if __name__ == "__main__":
    run_main(main, __file__)
