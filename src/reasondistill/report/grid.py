"""The comparison grid: methods x tasks x hallucination rates x seeds (x keep), one run per cell.

Each cell is an ordinary ``api.train`` + ``api.evaluate`` run in its own folder, so any number in a
report can be traced to a run folder and re-run alone. A re-run skips finished cells (their
``metrics.json`` exists) and resumes half-trained ones from their checkpoint, so a long benchmark
survives being killed. ``results.json`` (one row per cell: its config and all its metrics) is
rewritten atomically after every cell.

A row may build on an earlier row of the same cell (same task, rate and seed): an option value or a
row's ``student`` written ``run:NAME`` becomes the run folder of row NAME there. That is how
two-stage methods enter the grid: softcot's frozen main model is an earlier row's student
(``student: run:softcot-main``), and a KD student's teacher is a bigger row trained first
(``options: {teacher_model: run:teacher}``, with that row's own ``student: tiny`` and ``training``).

A row may also only evaluate: ``{name: pre_thinking@64, evaluates: pre_thinking, think_budget: 64}``
tests row ``pre_thinking``'s trained student of the same cell with its thinking cut after 64 tokens
(budget forcing), so a budget curve costs evaluations, not trainings.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from tqdm.auto import tqdm

from .. import api
from ..errors import UserError
from ..io import atomic_write_json, read_json
from ..methods import METHODS
from ..options import build
from ..runfolder import (
    CELL_FILE,
    METRICS_FILE,
    is_finished,
    result_row,
    task_slug,
)
from ..tasks import PAIR, is_correct, load_task
from .config import CompareOptions
from .rows import (
    RUN_REF,
    check_run_refs,
    check_training,
    fill_evaluation_rows,
    method_entry,
)

RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``name`` is the row label (a method or a variant of one)."""

    task: str
    name: str
    method: str
    hallucination: float
    seed: int
    keep: str
    options: dict = field(default_factory=dict, hash=False, compare=False)
    student: str | None = field(default=None, hash=False, compare=False)      # None: the config's student
    training: dict = field(default_factory=dict, hash=False, compare=False)  # over the config's training
    think_budget: int | None = field(default=None, hash=False, compare=False)  # evaluation's thinking budget
    evaluates: str | None = field(default=None, hash=False, compare=False)     # evaluation-only: that row's run

    @property
    def rel_dir(self) -> str:
        return f"{task_slug(self.task)}/{self.name}/h{self.hallucination:g}-s{self.seed}-{self.keep}"


def is_synthetic(task: str) -> bool:
    return task.startswith("synthetic/")


def load_config(config: str | Path | dict, base_dir: Path | None = None, overrides: dict | None = None) -> dict:
    """A validated config: defaults filled in, lists normalised, unknown keys refused, task paths
    resolved (relative paths against ``data_root``, else the config file's folder, else the cwd)."""
    if isinstance(config, dict):
        origin = "keyword:compare"
    else:
        from ..io import read_yaml_mapping
        path = Path(config)
        config, origin = read_yaml_mapping(path), f"file:{path}"
        base_dir = path.parent
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    cfg = build(CompareOptions, [(origin, config), ("flags" if origin.startswith("file:") else origin, given)]).as_dict()
    check_training(cfg["training"], origin.partition(":")[2] + ": training")  # fails now, not at cell 7
    cfg["methods"] = [method_entry(m, cfg["method_options"]) for m in cfg["methods"]]
    names = [m["name"] for m in cfg["methods"]]
    dupes = sorted(n for n, c in Counter(names).items() if c > 1)
    if dupes:
        raise UserError(f"compare config: method name(s) {', '.join(dupes)} appear twice; give variants a 'name'")
    check_run_refs(cfg["methods"])
    fill_evaluation_rows(cfg["methods"])
    cfg["tasks"] = [_resolve_task(str(t), cfg["data_root"], base_dir) for t in cfg["tasks"]]
    return cfg


def _resolve_task(task: str, data_root: str | None, base_dir: Path | None) -> str:
    if is_synthetic(task):
        from ..tasks import SYNTHETIC_TASKS, parse_spec
        if parse_spec(task)[0] not in SYNTHETIC_TASKS:
            raise UserError(f"compare config: unknown synthetic task '{task}'; valid: "
                            + ", ".join(f"synthetic/{t}" for t in SYNTHETIC_TASKS))
        return task
    if task.startswith("hf:"):
        return task
    if PAIR in task:  # a task's own train and test files, each resolved like a single file
        return PAIR.join(_resolve_task(part, data_root, base_dir) for part in task.split(PAIR))
    path = Path(task).expanduser()
    if not path.is_absolute():
        roots = [Path(data_root).expanduser()] if data_root else []
        if base_dir is not None:
            roots += [base_dir / data_root] if data_root and not Path(data_root).is_absolute() else []
            roots.append(base_dir)
        roots.append(Path.cwd())
        for root in roots:
            if (root / path).is_file():
                return str((root / path).resolve())
    if not path.is_file():
        raise UserError(f"compare config: task file not found: {task}" + (f" (data_root {data_root})" if data_root else ""))
    return str(path.resolve())


def cells(cfg: dict) -> list[Cell]:
    """The grid, seed-major so a half-finished benchmark already covers every method once.
    Settings that cannot differ collapse: files have no hallucination knob, synthetic tasks have no
    wrong teacher answers to filter, and methods without rationales ignore ``keep``."""
    out: list[Cell] = []
    for seed in cfg["seeds"]:
        for task in cfg["tasks"]:
            rates = cfg["hallucination"] if is_synthetic(task) else [0.0]
            for h in dict.fromkeys(rates):
                for m in cfg["methods"]:
                    for keep in dict.fromkeys(cfg["keep"] if filters_rationales(m, task) else ["all"]):
                        out.append(entry_cell(m, task, h, seed, keep))
    return list(dict.fromkeys(out))


def filters_rationales(entry: dict, task: str) -> bool:
    """Whether ``keep`` matters for this row on this task: it trains on teacher rationales that may
    be wrong (synthetic tasks have none to filter)."""
    return METHODS[entry["method"]].uses_rationale and not is_synthetic(task)


def entry_cell(entry: dict, task: str, hallucination: float, seed: int, keep: str) -> Cell:
    return Cell(task, entry["name"], entry["method"], hallucination, seed, keep, entry["options"], entry["student"],
                entry["training"], entry.get("think_budget"), entry.get("evaluates"))


def referenced_cell(cell: Cell, name: str, cfg: dict) -> Cell:
    """Row ``name``'s cell beside ``cell``: same task, rate and seed; its ``keep`` is the same when
    that row filters rationales, else ``all``."""
    entry = next(m for m in cfg["methods"] if m["name"] == name)
    return entry_cell(entry, cell.task, cell.hallucination, cell.seed,
                      cell.keep if filters_rationales(entry, cell.task) else "all")


def resolve_run_refs(cell: Cell, cfg: dict, root: Path) -> tuple[str, dict]:
    """(student, options) of ``cell`` with every ``run:NAME`` replaced by that row's run folder,
    which must be trained by now."""
    def resolve(value: Any) -> Any:
        if not (isinstance(value, str) and value.startswith(RUN_REF)):
            return value
        run_dir = (root / referenced_cell(cell, value[len(RUN_REF):], cfg).rel_dir).resolve()
        if not is_finished(run_dir):
            raise UserError(f"'{cell.name}' builds on {value}, but {run_dir} is not a trained run")
        return str(run_dir)
    return resolve(cell.student or cfg["student"]), {k: resolve(v) for k, v in cell.options.items()}


def cell_spec(cell: Cell, cfg: dict) -> dict:
    """Everything that decides a cell's result; a run folder made from another spec is refused."""
    return {"task": cell.task, "name": cell.name, "method": cell.method, "method_options": cell.options,
            "hallucination": cell.hallucination, "seed": cell.seed, "keep": cell.keep,
            "student": cell.student or cfg["student"], "n_train": cfg["n_train"], "n_test": cfg["n_test"],
            "training": {**cfg["training"], **cell.training, "seed": cell.seed},
            "test_fraction": cfg["test_fraction"], "split_seed": cfg["split_seed"], "vocab_size": cfg["vocab_size"],
            "max_new_tokens": cfg["max_new_tokens"], "explain": cfg["explain"],
            # only when set, so run folders of grids from before these keys stay resumable
            **({"think_budget": cell.think_budget} if cell.think_budget is not None else {}),
            **({"evaluates": cell.evaluates} if cell.evaluates else {})}


def _check_spec(run_dir: Path, spec: dict) -> None:
    cell_file = run_dir / CELL_FILE
    if cell_file.exists():
        old = read_json(cell_file).get("spec", {})
        changed = sorted(k for k in set(old) | set(spec) if old.get(k) != spec.get(k))
        if changed:
            raise UserError(f"{run_dir} was made by a different config ({', '.join(changed)} changed); "
                            "use another 'out' or delete that folder")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} exists but was not made by compare; use another 'out' or delete it")


def majority_baseline(cell: Cell, cfg: dict) -> float | None:
    """Accuracy of always giving the training set's most common answer: the floor for tasks
    (numbers, free text) where random guessing has no defined accuracy."""
    data_seed = cell.seed if is_synthetic(cell.task) else cfg["split_seed"]
    h = cell.hallucination if is_synthetic(cell.task) else 0.0
    train = load_task(cell.task, "train", n=cfg["n_train"], seed=data_seed, hallucination=h,
                      test_fraction=cfg["test_fraction"])
    test = load_task(cell.task, "test", n=cfg["n_test"], seed=cfg["split_seed"], test_fraction=cfg["test_fraction"])
    common = Counter(ex.answer for ex in train).most_common(1)[0][0]
    return mean(is_correct(common, ex.answer, ex.answer_type) for ex in test)


@contextmanager
def _undo_cell_on_failure(run_dir: Path, fresh: bool):
    """A cell whose training fails before its first checkpoint (a task that does not load, a bad
    student) leaves no cell.json or empty folder behind; one with a checkpoint stays resumable."""
    try:
        yield
    except BaseException:
        if fresh and not any((run_dir / "checkpoints").glob("step-*")):
            (run_dir / CELL_FILE).unlink(missing_ok=True)
            for folder in (run_dir, *run_dir.parents):
                try:
                    folder.rmdir()  # only while empty, up to the grid's root
                except OSError:
                    break
        raise


def metrics_match(run_dir: Path, cfg: dict) -> bool:
    """Whether the cell's metrics.json is the cell's own evaluation (its test split, size and
    seed), not a manual ``eval`` on other data written into the same folder."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return False
    m = read_json(path)
    return (isinstance(m, dict) and m.get("split") == "test" and m.get("seed", cfg["split_seed"]) == cfg["split_seed"]
            and m.get("n_requested", cfg["n_test"]) == cfg["n_test"]
            and m.get("test_fraction", cfg["test_fraction"]) == cfg["test_fraction"])


def run_cell(cell: Cell, cfg: dict, root: Path) -> dict:
    """Train and evaluate one cell unless it is finished; return its results row."""
    run_dir = root / cell.rel_dir
    spec = cell_spec(cell, cfg)
    _check_spec(run_dir, spec)
    if not (metrics_match(run_dir, cfg) and read_json(run_dir / METRICS_FILE).get("data") == cell.task):
        started = time.perf_counter()
        # Seconds already spent on this cell by an earlier invocation (training, when only the
        # evaluation is redone): a cell's time is all the compute it took.
        spent = read_json(run_dir / CELL_FILE).get("seconds", 0.0) if (run_dir / CELL_FILE).exists() else 0.0
        synthetic = is_synthetic(cell.task)
        model_dir = run_dir
        if cell.evaluates:  # evaluation-only: the trained row's student, metrics here
            model_dir = (root / referenced_cell(cell, cell.evaluates, cfg).rel_dir).resolve()
            if not is_finished(model_dir):
                raise UserError(f"'{cell.name}' evaluates {cell.evaluates}, but {model_dir} is not a trained run")
            atomic_write_json(run_dir / CELL_FILE, {"spec": spec})
        elif not is_finished(run_dir):
            student, options = resolve_run_refs(cell, cfg, root)
            resume = any((run_dir / "checkpoints").glob("step-*"))
            fresh = not (run_dir / CELL_FILE).exists()
            atomic_write_json(run_dir / CELL_FILE, {"spec": spec})
            with _undo_cell_on_failure(run_dir, fresh):
                api.train(cell.method, cell.task, run_dir, student=student, method_options=options,
                          training=spec["training"], n=cfg["n_train"], seed=cell.seed,
                          hallucination=cell.hallucination, keep=cell.keep, vocab_size=cfg["vocab_size"],
                          resume=resume, overwrite=not resume, progress=False,
                          test_fraction=cfg["test_fraction"], split_seed=None if synthetic else cfg["split_seed"])
        # The test set is the same for every method and seed: seeds vary training, not the exam.
        api.evaluate(model_dir, cell.task, split="test", n=cfg["n_test"], seed=cfg["split_seed"], out=run_dir,
                     batch_size=cfg["eval_batch_size"], max_new_tokens=cfg["max_new_tokens"],
                     explain=cfg["explain"], progress=False, test_fraction=cfg["test_fraction"],
                     think_budget=cell.think_budget)
        seconds = round(spent + time.perf_counter() - started, 3)
        atomic_write_json(run_dir / CELL_FILE, {"spec": spec, "seconds": seconds,
                                                "majority": majority_baseline(cell, cfg)})
    return row_for(run_dir, root, read_json(run_dir / CELL_FILE))


def row_for(run_dir: Path, root: Path, cell_info: dict) -> dict:
    """A results row from a finished cell: the cell's labels and config, then its metrics."""
    spec = cell_info["spec"]
    labels = {"task": task_slug(spec["task"]), "method": spec["name"], "base_method": spec["method"],
              "hallucination": spec["hallucination"], "seed": spec["seed"], "keep": spec["keep"]}
    return result_row(run_dir, root, labels=labels, config=spec,
                      extra={"majority": cell_info.get("majority"), "seconds": cell_info.get("seconds")})


@contextmanager
def quiet_hf_bars():
    """Silence transformers' per-file loading/saving bars inside a cell: one line per cell is the
    progress a grid needs."""
    from transformers.utils import logging as hf_logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def versions() -> dict:
    import torch
    import transformers

    from .. import __version__
    return {"reasondistill": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def compare(config: str | Path | dict, *, progress: bool = True, **overrides: Any) -> dict:
    """Run every cell of the grid described by ``config`` (a YAML path or a dict; ``overrides`` are
    CompareOptions keys over it, e.g. ``out=``, ``report=False``), write ``results.json`` and the
    HTML report. Returns the results."""
    if "out" in overrides and overrides["out"] is not None:
        overrides["out"] = str(overrides["out"])
    cfg = load_config(config, overrides=overrides)
    if not cfg["out"]:
        raise UserError("compare config: 'out' is required (or pass --out)")
    root = Path(cfg["out"])
    grid = cells(cfg)
    results = {"config": cfg, "n_cells": len(grid), "complete": False, "versions": versions(),
               "machine": platform.node(), "rows": []}
    started = time.perf_counter()
    bar = tqdm(grid, desc="compare", unit="cell", disable=not progress, dynamic_ncols=True)
    for i, cell in enumerate(bar, start=1):
        done = metrics_match(root / cell.rel_dir, cfg)
        with quiet_hf_bars():
            row = run_cell(cell, cfg, root)
        results["rows"].append(row)
        results["seconds"] = round(time.perf_counter() - started, 1)
        results["complete"] = i == len(grid)
        atomic_write_json(root / RESULTS_FILE, results)
        line = (f"[{i}/{len(grid)}] {row['task']} {row['method']} h={row['hallucination']:g} s={row['seed']} "
                f"keep={row['keep']}: accuracy {row['accuracy']:.3f} (answered {row.get('answered') or 0:.2f}), "
                f"{row['ms_to_answer']:.1f} ms to answer"
                + (" (finished before)" if done else f", {row['seconds']:.0f} s"))
        if progress:
            tqdm.write(line)
    if cfg["report"]:
        from .html import write_report
        results["report"] = str(write_report(root, results=results))
    return results
