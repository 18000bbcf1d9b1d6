"""The options of ``compare`` (its grid file's keys) and ``report``: one typed definition each.

A compare grid is a YAML file of ``CompareOptions`` keys; the scalar ones are flags too
(``compare --config grid.yaml --out runs/x --seeds 0 1``), while ``methods``, ``tasks``,
``training`` and ``method_options`` come from the file (or the dict given to ``compare``). A
one-field change adds an option, as everywhere (see options.py).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import field_validator

from ..options import REQUIRED, Options, opt


class CompareOptions(Options):
    """``reasondistill compare`` / ``reasondistill.compare``: a grid of methods x tasks x
    hallucination rates x seeds (x keep)."""

    command: ClassVar[str] = "compare"

    methods: list[Any] = opt(REQUIRED, "method names, or {name, method, options, student, training} entries",
                             cli=False)
    tasks: list[str] = opt(REQUIRED, "built-in tasks, hf:NAME or data files (relative to data_root)", cli=False)
    out: str | None = opt(None, "output folder (one run folder per cell, results.json, report.html)")
    title: str | None = opt(None, "the report's title")
    student: str = opt("tiny", "student of every row without its own")
    hallucination: list[float] = opt([0.0], "synthetic tasks: rates of corrupted training rationales")
    seeds: list[int] = opt([0], "training seeds (the test set stays the same)")
    keep: list[Literal["correct", "all"]] = opt(["correct"], "rationale filters to compare (files only)")
    n_train: int | None = opt(None, "training examples per cell", ge=1)
    n_test: int | None = opt(None, "test examples per cell", ge=1)
    training: dict[str, Any] = opt({}, "train options of every row (max_steps, batch_size, lr, ...)", cli=False)
    method_options: dict[str, Any] = opt({}, "options by method or row name", cli=False)
    test_fraction: float = opt(0.3, "a single file: fraction held out as the test split", gt=0, lt=1)
    split_seed: int = opt(0, "seed of a file's train/test split", cli=True)
    data_root: str | None = opt(None, "folder relative task paths are found in")
    vocab_size: int = opt(600, "tiny students: tokenizer size", ge=16)
    eval_batch_size: int = opt(32, "questions decoded together in evaluation", ge=1)
    max_new_tokens: int | None = opt(None, "longest generation (default: from the training data)", ge=1)
    explain: bool = opt(True, "answer-first methods: also write (and score) the rationale")
    report: bool = opt(True, "write the HTML report at the end (--no-report: results.json only)")

    @field_validator("methods", "tasks", "hallucination", "seeds", "keep", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """A single value stands for a list of one."""
        return value if isinstance(value, (list, tuple)) or value is None else [value]

    @field_validator("methods", "tasks", "hallucination", "seeds", "keep")
    @classmethod
    def _not_empty(cls, value: list) -> list:
        if not value:
            raise ValueError("must not be empty")
        return value


class ReportOptions(Options):
    """``reasondistill report`` / ``reasondistill.report``."""

    command: ClassVar[str] = "report"

    run_dir: str = opt(REQUIRED, "folder written by compare (results.json) or holding evaluated runs",
                       positional=True)
    out: str | None = opt(None, "HTML path (default RUN_DIR/report.html)")
