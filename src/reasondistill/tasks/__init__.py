"""Tasks: where examples come from (synthetic generators, local files, the hub) and how answers
are parsed and scored. ``load_task`` is the one entry point the CLI and the API use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from .answers import chance_accuracy, extract_answer, is_correct, normalize
from .example import ANSWER_TYPES, AnswerType, Example
from .loaders import (FORMATS, HUB_DATASETS, detect_format, infer_answer_type, load_hf_dataset, load_path,
                      train_test_split)
from .synthetic import SYNTHETIC_TASKS, generate, parse_spec, rationale_answer, scripted_rationale, with_style

__all__ = [
    "ANSWER_TYPES", "AnswerType", "Example", "PAIR", "SYNTHETIC_TASKS", "chance_accuracy", "detect_format",
    "extract_answer", "generate", "infer_answer_type", "is_correct", "list_tasks", "load_hf_dataset",
    "load_path", "load_task", "normalize", "parse_spec", "rationale_answer", "scripted_rationale",
    "train_test_split", "with_style",
]

SPLITS = ("train", "test", "all")
PAIR = "::"  # TRAIN_FILE::TEST_FILE: a task released with its own train and test files
TEST_SEED_OFFSET = 10_000  # synthetic test sets use seed + this, so they differ from any train set


def load_task(spec: str, split: str = "train", *, n: int | None = None, seed: int = 0,
              hallucination: float = 0.0, test_fraction: float = 0.2, format: str | None = None,
              **field_options: Any) -> list[Example]:
    """Examples for a task spec: ``synthetic/<name>``, a local file path, or ``hf:<name>``.

    Synthetic train sets get ``n or 1000`` examples (with ``hallucination``); test sets ``n or 200``,
    always clean, from another seed and a disjoint question space. ``TRAIN_FILE::TEST_FILE`` reads
    a task's own released splits (no seeded split). ``synthetic/NAME:long[=TOKENS]``
    writes reasoning-model traces of about TOKENS tokens (default 500) instead of short rationales. A file is split with a seeded
    shuffle (``test_fraction``, ``seed``), so train and test of one file never overlap; ``n`` keeps
    the first n of the chosen split.
    """
    spec = str(spec)
    if spec.startswith("synthetic/"):
        if split not in SPLITS:
            raise UserError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        name, style, tokens = parse_spec(spec)
        if name not in SYNTHETIC_TASKS:
            raise UserError(f"unknown synthetic task '{name}'; valid: {', '.join(SYNTHETIC_TASKS)}")
        train = (generate(name, n or 1000, seed, hallucination, split="train", style=style, tokens=tokens)
                 if split != "test" else [])
        test = generate(name, n or 200, seed + TEST_SEED_OFFSET, 0.0, split="test") if split != "train" else []
        examples = train + test
    elif spec.startswith("hf:"):
        _no_hallucination(spec, hallucination)
        if split == "all":
            examples = load_hf_dataset(spec[3:], "train") + load_hf_dataset(spec[3:], "test")
        else:
            examples = load_hf_dataset(spec[3:], split)  # the hub's own splits (train, test, validation)
        examples = examples[:n] if n else examples
    elif PAIR in spec:
        _no_hallucination(spec, hallucination)
        if split not in SPLITS:
            raise UserError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        files = spec.split(PAIR)
        if len(files) != 2 or not all(Path(f).is_file() for f in files):
            raise UserError(f"'{spec}' must be TRAIN_FILE{PAIR}TEST_FILE, two existing files")
        chosen = files if split == "all" else [files[split == "test"]]
        examples = [ex for f in chosen for ex in load_path(f, format, **field_options)]
        examples = examples[:n] if n else examples
    elif Path(spec).is_file():
        _no_hallucination(spec, hallucination)
        if split not in SPLITS:
            raise UserError(f"unknown split '{split}'; valid: {', '.join(SPLITS)}")
        examples = load_path(spec, format, **field_options)
        if split != "all":
            train, test = train_test_split(examples, test_fraction, seed)
            examples = train if split == "train" else test
        examples = examples[:n] if n else examples
    else:
        raise UserError(f"unknown task or missing file '{spec}'; run `reasondistill tasks list`")
    if not examples:
        raise UserError(f"no examples for '{spec}' split '{split}'")
    return examples


def _no_hallucination(spec: str, hallucination: float) -> None:
    if hallucination:
        raise UserError(f"hallucination applies to synthetic tasks only, not '{spec}'")


def list_tasks() -> list[dict[str, str]]:
    """Every task a user can name, for `reasondistill tasks list`."""
    rows = [{"name": f"synthetic/{t.name}", "kind": "synthetic", "description": t.description}
            for t in SYNTHETIC_TASKS.values()]
    rows += [{"name": name, "kind": "format", "description": f"a local file: {desc}"}
             for name, desc in FORMATS.items()]
    rows += [{"name": f"hf:{name}", "kind": "hub", "description": desc} for name, desc in HUB_DATASETS.items()]
    return rows
