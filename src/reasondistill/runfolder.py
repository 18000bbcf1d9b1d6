"""A run folder's files, in one place: their names, readers and writers, and the rules that keep a
folder from being clobbered or mistaken for a finished run.

A trained run folder holds ``train_call.json`` (the resolved call), ``reasondistill.json`` (the
run record: method, options, data, training summary), ``metrics.jsonl`` (the training curve), the
student in Hugging Face format, the method's extra modules, and after evaluation ``metrics.json``
and ``predictions.jsonl``. The record is written last, atomically, and removed before any training
into the folder starts, so a folder without it is unfinished (killed, failed) and ``eval`` refuses it.

``train`` refuses a folder that already holds a run unless ``--resume`` (the saved call must match,
or the differences are named) or ``--overwrite`` (cleared first). A host such as ``compare`` may
keep its own file in the folder (``cell.json``); it is not the run's, so it neither makes the folder
"taken" nor is cleared.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

from .errors import UserError
from .io import atomic_write_json, file_mode, read_json

RUN_FILE = "reasondistill.json"        # the run record; its presence means "finished"
CALL_FILE = "train_call.json"          # the resolved call (config.json is the saved model's own)
MODULES_FILE = "method_modules.safetensors"
METRICS_LOG = "metrics.jsonl"          # the training curve
METRICS_FILE = "metrics.json"          # evaluation
PREDICTIONS_FILE = "predictions.jsonl"
CHECKPOINTS = "checkpoints"
WEIGHTS_FILE = "kpod_weights.jsonl"    # kpod: learnt per-token weights (``inspect-weights`` prints them)
CELL_FILE = "cell.json"                # compare's record of the cell a folder belongs to
HOST_FILES = {CELL_FILE}
# Call keys that may change on --resume: how far and how often, not what is trained.
RESUMABLE_KEYS = {"max_steps", "checkpoint_every", "log_every", "progress", "resume", "overwrite"}


def check_name(name: str, what: str) -> str:
    """A name that becomes a folder: one plain path component (no separators, no ``..``)."""
    text = str(name)
    if (not text.strip() or text in (".", "..") or "/" in text or "\\" in text or "\0" in text
            or text.startswith(".") or os.sep in text):
        raise UserError(f"{what} '{text}' cannot be a folder name: use letters, digits, '-', '_', '+' "
                        "(no path separators, no leading dot)")
    return text


def check_writable_dir(path: Path) -> None:
    """``path`` (a folder to write) is not a file and its nearest existing parent is writable."""
    if path.exists() and not path.is_dir():
        raise UserError("exists and is a file; --out takes a folder", path=str(path))
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError("not writable", path=str(parent))


def check_output_file(path: str | Path, *, overwrite: bool = False) -> None:
    """A file about to be written (``teach --out``): not a folder, writable, and not already there
    unless ``overwrite``."""
    path = Path(path)
    if path.is_dir():
        raise UserError("is a folder; --out takes the file to write (e.g. rationales.jsonl)", path=str(path))
    if path.exists() and not overwrite:
        raise UserError("already exists; pass --overwrite to replace it (finished calls are reused)",
                        path=str(path))
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError("not writable", path=str(parent))


def run_contents(out: Path) -> list[Path]:
    """What the folder holds that belongs to a run (a host's own files left out)."""
    if not out.is_dir():
        return []
    return [p for p in out.iterdir() if p.name not in HOST_FILES]


def call_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting that decides what is trained and differs."""
    out = []
    for key in sorted(set(old) | set(new)):
        if key in RESUMABLE_KEYS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{d}" for d in call_differences(a, b)]
        elif a != b:
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def prepare(out: Path, call: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Check ``out`` may take this run, before any compute. Raises a one-line UserError when
    ``out`` holds another run (without ``--resume``/``--overwrite``) or ``--resume`` names a
    different call. Writes nothing."""
    check_writable_dir(out)
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    taken = run_contents(out)
    if not taken or overwrite:
        return
    if not resume:
        raise UserError("already holds a run; pass --resume to continue it or --overwrite to replace it",
                        path=str(out))
    if not (out / CALL_FILE).exists():
        raise UserError(f"cannot resume: no {CALL_FILE} here (not a run folder?)", path=str(out))
    diff = call_differences(read_json(out / CALL_FILE), call)
    if diff:
        raise UserError("--resume with a different call (" + "; ".join(diff) + "); use the same options, "
                        "another --out, or --overwrite", path=str(out))


def start(out: Path, call: dict[str, Any], *, overwrite: bool) -> bool:
    """Make ``out`` ready for training (main process only): cleared with ``overwrite``, the finished
    record removed (the run is unfinished until it is written again), the call saved. Returns
    whether the folder was new (so a failed start can take it away again)."""
    created = not out.exists()
    if overwrite:
        for p in run_contents(out):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).unlink(missing_ok=True)
    atomic_write_json(out / CALL_FILE, call)
    return created


def abandon(out: Path, created: bool) -> None:
    """After a failed start: take away what this call made, unless a checkpoint makes it resumable."""
    if not out.is_dir() or any((out / CHECKPOINTS).glob("step-*")):
        return
    if created and not any((out / name).exists() for name in HOST_FILES):
        shutil.rmtree(out, ignore_errors=True)
        return
    for p in run_contents(out):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def usual_modes(out: Path) -> None:
    """Give every file in the folder the mode ``open`` would (0666 less the umask): libraries that
    save through a private temporary file (the model's safetensors) leave 0600, which another user
    or a serving container with another uid cannot read."""
    mode = file_mode()
    for p in out.rglob("*"):
        if p.is_file() and not p.is_symlink() and stat.S_IMODE(p.stat().st_mode) != mode:
            p.chmod(mode)


def write_record(out: Path, record: dict[str, Any]) -> None:
    """The run record, last: from now on the folder is a finished run."""
    usual_modes(out)
    atomic_write_json(out / RUN_FILE, record)


def read_record(run_dir: str | Path) -> dict[str, Any]:
    """The record of a finished run folder, or a one-line error saying why it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError("run folder not found", path=str(run_dir))
    if not (run_dir / RUN_FILE).exists():
        why = ("training did not finish (killed or failed); rerun train with --resume"
               if (run_dir / CALL_FILE).exists() else "not a trained run folder")
        raise UserError(f"{why} (no {RUN_FILE})", path=str(run_dir))
    record = read_json(run_dir / RUN_FILE)
    if not isinstance(record, dict) or "method" not in record:
        raise UserError(f"{RUN_FILE} is not a run record (no 'method')", path=str(run_dir / RUN_FILE))
    return record


def read_call(run_dir: str | Path) -> dict[str, Any]:
    return read_json(Path(run_dir) / CALL_FILE)


def is_finished(run_dir: str | Path) -> bool:
    return (Path(run_dir) / RUN_FILE).is_file()


# ----- results rows (compare's results.json and the report of loose run folders) -----------------

METRIC_KEYS = ["n", "accuracy", "tokens_to_answer", "ms_to_answer", "tokens_total", "ms_total", "answered",
               "chance", "consistency", "rationale_concludes"]


def task_slug(task: str) -> str:
    """Folder-safe, short task label: ``synthetic-coin_flip``, ``hf-gsm8k``, or a file's stem."""
    from .tasks import PAIR
    if task.startswith(("synthetic/", "hf:")):  # synthetic/arithmetic:long=300 -> synthetic-arithmetic-long300
        return task.replace("/", "-").replace(":", "-").replace("=", "")
    if PAIR in task:  # .../svamp_train.jsonl::.../svamp_test.jsonl -> svamp_train+test
        return Path(task.split(PAIR)[0]).stem + "+test"
    return Path(task).stem


def result_row(run_dir: Path, root: Path, *, labels: dict[str, Any], config: dict[str, Any],
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One results row from an evaluated run folder: ``labels`` (task, method, setting), its
    metrics, its training summary, where it is and the config that made it."""
    metrics = read_json(run_dir / METRICS_FILE)
    record = read_json(run_dir / RUN_FILE) if (run_dir / RUN_FILE).exists() else {}
    summary = record.get("train", {})
    return {**labels, **{k: metrics.get(k) for k in METRIC_KEYS}, **(extra or {}),
            "n_train": record.get("n_train"), "train_seconds": summary.get("seconds"),
            "train_tokens_per_s": summary.get("tokens_per_s"), "final_loss": summary.get("final_loss"),
            "run_dir": str(run_dir.relative_to(root)), "config": config}
