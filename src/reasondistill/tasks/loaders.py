"""Loaders: files and hub datasets in, ``list[Example]`` out, with gold answers already normalized.

Every user mistake (missing file, bad JSON, a record without a required field, an empty file)
becomes a :class:`UserError` naming the file, the line and the field, so the CLI can print one
clear line instead of a traceback.
"""

from __future__ import annotations

import inspect
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..io import read_json, read_jsonl
from .answers import normalize
from .example import ANSWER_TYPES, Example

# Answer type of the standard reasoning tasks, by the task name their records carry.
TASK_ANSWER_TYPES: dict[str, str] = {
    **dict.fromkeys(["addsub", "multiarith", "singleeq", "svamp", "gsm8k", "asdiv"], "number"),
    **dict.fromkeys(["aqua", "aqua_rat", "commonsenseqa", "commonsense_qa", "tracking_shuffled_objects",
                     "date_understanding", "prontoqa", "proofwriter"], "choice"),
    **dict.fromkeys(["coin_flip", "strategyqa"], "yesno"),
    "last_letters": "text",
}
FORMATS: dict[str, str] = {
    "gsm8k": "GSM8K JSONL: question, answer = rationale ending in '#### <number>'",
    "teacher": "teacher-rationale JSONL: id, task, question, choices?, answer, rationale, teacher_answer",
    "jsonl": "any JSONL (or JSON array) of records; field names configurable",
    "semcot": "SemCoT JSON array: query, reasoning, answer, condensed_reasoning",
    "logic": "Logic-LLM JSON array (ProntoQA, ProofWriter): context, question, options, answer letter",
}
_CALC_RE = re.compile(r"<<[^<>]*>>")


# ----- helpers -------------------------------------------------------------------------------------

@dataclass
class _Source:
    """Where records come from, so errors can say "file:line" (JSONL) or "record N" (JSON array)."""

    path: Path
    array: bool = False

    def error(self, message: str, n: int | None = None, field: str | None = None) -> UserError:
        if self.array and n is not None:
            return UserError(f"record {n}: {message}", path=str(self.path), field=field)
        return UserError(message, path=str(self.path), line=n, field=field)

    def require(self, record: dict, field: str, n: int) -> Any:
        value = record.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise self.error("missing required field", n, field)
        return value

    def gold(self, value: Any, answer_type: str, n: int, field: str) -> str:
        gold = normalize(str(value), answer_type)
        if gold is None:
            raise self.error(f"cannot read {value!r} as a {answer_type} answer", n, field)
        return gold


def _read(path: str | Path) -> tuple[list[tuple[int, dict]], _Source]:
    """All (line or record number, record) pairs of a JSONL file or a JSON-array file."""
    path = Path(path)
    if not path.exists():
        raise UserError("file not found", path=str(path))
    if path.is_dir():
        raise UserError("is a folder, expected a .jsonl or .json file", path=str(path))
    with open(path, "rb") as f:
        head = f.read(1024).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
    if not head.startswith(b"["):
        return list(read_jsonl(path)), _Source(path)
    src = _Source(path, array=True)
    data = read_json(path)
    for i, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise src.error("expected a JSON object", i)
    return list(enumerate(data, start=1)), src


def _nonempty(examples: list[Example], path: str | Path) -> list[Example]:
    if not examples:
        raise UserError(f"no examples in {path}")
    return examples


def parse_choices(value: Any) -> dict[str, str] | None:
    """Choices as {"A": text}: from a dict, a list ("A) True" or plain texts), or HF label/text."""
    if value is None:
        return None
    if isinstance(value, dict) and "label" in value and "text" in value:
        return {str(k).upper(): str(v) for k, v in zip(value["label"], value["text"])}
    if isinstance(value, dict):
        return {str(k).strip().upper(): str(v) for k, v in value.items()}
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            m = re.match(r"\s*\(?([A-Z])\s*[).:]\s*(.*)", str(item), re.S)
            key, text = (m.group(1), m.group(2)) if m else (chr(ord("A") + i), str(item))
            out[key] = text.strip()
        return out
    raise ValueError(f"cannot read choices from {type(value).__name__}")


def infer_answer_type(answers: list[str]) -> str:
    """Guess the answer type from gold answers: all yes/no, all letters, all numbers, else text."""
    values = [str(a).strip() for a in answers if a is not None and str(a).strip()]
    if not values:
        return "text"
    if all(v.lower().rstrip(".") in ("yes", "no", "true", "false") for v in values):
        return "yesno"
    if all(re.fullmatch(r"\(?[A-Z]\)?|\([a-z]\)", v) for v in values):
        return "choice"
    if all(re.fullmatch(r"[-+]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?|[-+]?\d*\.\d+|-?\d+/\d+", v)
           for v in values):
        return "number"
    return "text"


def strip_calculator(text: str) -> str:
    """Drop GSM8K calculator annotations: "48/2 = <<48/2=24>>24" -> "48/2 = 24"."""
    return _CALC_RE.sub("", text)


# ----- file formats --------------------------------------------------------------------------------

def _gsm8k_example(record: dict, ex_id: str, src: _Source, n: int) -> Example:
    question = src.require(record, "question", n)
    answer = str(src.require(record, "answer", n))
    rationale, marker, final = answer.rpartition("####")
    if not marker:
        raise src.error("no final '#### <number>' line", n, "answer")
    extra = {k: v for k, v in record.items() if k not in ("id", "question", "answer")}
    return Example(id=ex_id, question=str(question).strip(), answer=src.gold(final, "number", n, "answer"),
                   answer_type="number", rationale=strip_calculator(rationale).strip() or None,
                   task="gsm8k", meta=extra)


def load_gsm8k(path: str | Path) -> list[Example]:
    """GSM8K JSONL: the human solution becomes the rationale, the number after #### the gold."""
    rows, src = _read(path)
    examples = [_gsm8k_example(r, str(r.get("id") or f"gsm8k-{n}"), src, n) for n, r in rows]
    return _nonempty(examples, path)


def load_jsonl(path: str | Path, *, question_field: str = "question", answer_field: str = "answer",
               rationale_field: str | None = "rationale", choices_field: str | None = "choices",
               id_field: str | None = "id", answer_type: str | None = None,
               teacher_answer_field: str | None = "teacher_answer") -> list[Example]:
    """Any JSONL (or JSON array) of records, including our own saved Examples. Unmapped fields go
    to meta. The answer type is, in order: the argument, the record's own ``answer_type``, the
    known type of its ``task``, or inferred from the gold answers of that task."""
    if answer_type is not None and answer_type not in ANSWER_TYPES:
        raise UserError(f"unknown answer type '{answer_type}'; valid: {', '.join(ANSWER_TYPES)}")
    rows, src = _read(path)
    default_task = Path(path).stem
    golds: dict[str, list[str]] = {}
    with_choices: dict[str, bool] = {}
    for n, r in rows:
        src.require(r, question_field, n)
        task = str(r.get("task") or default_task)
        golds.setdefault(task, []).append(str(src.require(r, answer_field, n)))
        with_choices[task] = with_choices.get(task, True) and bool(choices_field and r.get(choices_field))
    task_types = {task: TASK_ANSWER_TYPES.get(task.lower()) or ("choice" if with_choices[task] else None)
                  or infer_answer_type(g) for task, g in golds.items()}

    mapped = {question_field, answer_field, rationale_field, choices_field, id_field, teacher_answer_field,
              "task", "answer_type", "meta"}
    examples = []
    for n, r in rows:
        task = str(r.get("task") or default_task)
        own_type = r.get("answer_type") if r.get("answer_type") in ANSWER_TYPES else None
        atype = answer_type or own_type or task_types[task]
        choices = None
        if choices_field and r.get(choices_field) is not None:
            try:
                choices = parse_choices(r[choices_field])
            except ValueError as e:
                raise src.error(str(e), n, choices_field) from None
        rationale = r.get(rationale_field) if rationale_field else None
        raw_teacher = r.get(teacher_answer_field) if teacher_answer_field else None
        teacher_answer = normalize(str(raw_teacher), atype) if raw_teacher not in (None, "") else None
        meta = dict(r["meta"]) if isinstance(r.get("meta"), dict) else {}
        meta.update({k: v for k, v in r.items() if k not in mapped})
        if raw_teacher not in (None, "") and teacher_answer is None:
            meta["teacher_answer_raw"] = raw_teacher  # the teacher said something we cannot score
        ex_id = r.get(id_field) if id_field else None
        examples.append(Example(
            id=str(ex_id) if ex_id is not None else f"{task}-{n}",
            question=str(r[question_field]).strip(),
            answer=src.gold(r[answer_field], atype, n, answer_field),
            answer_type=atype, choices=choices,
            rationale=str(rationale).strip() if rationale not in (None, "") else None,
            teacher_answer=teacher_answer, task=task, meta=meta))
    return _nonempty(examples, path)


def load_teacher_records(path: str | Path, *, answer_type: str | None = None) -> list[Example]:
    """Teacher-rationale records (zero-shot-cot, step-by-step, `teach` output): the generic loader
    with the standard field names, answer type from the task name."""
    return load_jsonl(path, answer_type=answer_type)


def _split_query_choices(query: str) -> tuple[str, dict[str, str] | None]:
    """SemCoT puts multiple-choice options inside the query ("Choices:\\nA. ignore\\n..."); split
    them out so every loader hands methods the same shape (question text + choices dict)."""
    head, sep, tail = query.partition("\nChoices:")
    if not sep:
        return query, None
    choices = dict(re.findall(r"^\s*([A-Z])[.)]\s*(.+?)\s*$", tail, re.M))
    return (head, choices) if choices else (query, None)


def load_semcot(path: str | Path) -> list[Example]:
    """SemCoT JSON array: ``reasoning`` is the rationale; ``condensed_reasoning`` goes to meta.
    ``full_answer`` (reasoning + "####answer") is dropped as redundant."""
    rows, src = _read(path)
    for n, r in rows:
        src.require(r, "query", n)
        src.require(r, "answer", n)
    task = Path(path).parent.name
    atype = TASK_ANSWER_TYPES.get(task) or infer_answer_type([str(r["answer"]) for _, r in rows])
    examples = []
    for n, r in rows:
        question, choices = _split_query_choices(str(r["query"]).strip())
        question = re.sub(r"^Q:\s*", "", question).strip()
        reasoning = strip_calculator(str(r.get("reasoning") or "")).strip()
        meta = {k: v for k, v in r.items() if k not in ("id", "query", "reasoning", "answer", "full_answer")}
        examples.append(Example(id=str(r.get("id") or f"{task}-{Path(path).stem}-{n}"), question=question,
                                answer=src.gold(r["answer"], atype, n, "answer"), answer_type=atype,
                                choices=choices, rationale=reasoning or None, task=task, meta=meta))
    return _nonempty(examples, path)


def load_logic(path: str | Path) -> list[Example]:
    """Logic-LLM JSON array: context + question is the question, options become choices A/B/C.
    ProntoQA's gold ``explanation`` (a valid proof) becomes the rationale."""
    rows, src = _read(path)
    task = Path(path).stem.split("_")[0].lower()
    examples = []
    for n, r in rows:
        context, question = src.require(r, "context", n), src.require(r, "question", n)
        try:
            choices = parse_choices(src.require(r, "options", n))
        except ValueError as e:
            raise src.error(str(e), n, "options") from None
        explanation = r.get("explanation")
        if isinstance(explanation, list):
            explanation = " ".join(str(s).strip() for s in explanation)
        meta = {k: v for k, v in r.items()
                if k not in ("id", "context", "question", "options", "answer", "explanation")}
        examples.append(Example(id=str(r.get("id") or f"{task}-{n}"),
                                question=f"{str(context).strip()}\n{str(question).strip()}",
                                answer=src.gold(src.require(r, "answer", n), "choice", n, "answer"),
                                answer_type="choice", choices=choices,
                                rationale=explanation or None, task=task, meta=meta))
    return _nonempty(examples, path)


def load_json_array(path: str | Path, format: str | None = None) -> list[Example]:
    """A JSON-array file in one of the array formats ("semcot", "logic"; generic arrays: "jsonl")."""
    format = format or detect_format(path)
    loaders = {"semcot": load_semcot, "logic": load_logic, "jsonl": load_jsonl}
    if format not in loaders:
        raise UserError(f"'{format}' is not a JSON-array format; valid: {', '.join(loaders)}", path=str(path))
    return loaders[format](path)


def detect_format(path: str | Path) -> str:
    """Guess the format from the first record."""
    rows, _ = _read(path)
    if not rows:
        raise UserError(f"no examples in {path}")
    r = rows[0][1]
    if "query" in r and "answer" in r:
        return "semcot"
    if "context" in r and "options" in r:
        return "logic"
    if isinstance(r.get("answer"), str) and "####" in r["answer"] and "rationale" not in r:
        return "gsm8k"
    if "rationale" in r and ("teacher_answer" in r or "task" in r):
        return "teacher"
    return "jsonl"


LOADERS: dict[str, Callable[..., list[Example]]] = {
    "gsm8k": load_gsm8k, "teacher": load_teacher_records, "jsonl": load_jsonl,
    "semcot": load_semcot, "logic": load_logic,
}


def load_path(path: str | Path, format: str | None = None, **field_options: Any) -> list[Example]:
    """Load a local file in the given format (detected when None). Field options (question_field=...)
    pick the generic "jsonl" loader when no format is named; an option set to None counts as not
    given (pass rationale_field="" to ignore a rationale field)."""
    if format is not None and format not in LOADERS:
        raise UserError(f"unknown format '{format}'; valid: {', '.join(LOADERS)}")
    options = {k: v for k, v in field_options.items() if v is not None}  # None = not given (CLI default)
    fmt = format or ("jsonl" if options.keys() - {"answer_type"} else detect_format(path))
    valid = set(inspect.signature(LOADERS[fmt]).parameters) - {"path"}
    unknown = sorted(options.keys() - valid)
    if unknown:
        raise UserError(f"option(s) {', '.join(unknown)} do not apply to format '{fmt}'"
                        + (f"; valid: {', '.join(sorted(valid))}" if valid else ""))
    return LOADERS[fmt](path, **options)


# ----- hub ------------------------------------------------------------------------------------------

HUB_DATASETS: dict[str, str] = {
    "gsm8k": "openai/gsm8k (config main): grade-school math, number answers",
    "svamp": "ChilleD/SVAMP: one-step math word problems, number answers",
    "commonsense_qa": "tau/commonsense_qa: 5-way multiple choice (test split has no labels)",
    "aqua_rat": "deepmind/aqua_rat (config raw): algebra, 5-way multiple choice",
}
_HUB_ALIASES = {"openai/gsm8k": "gsm8k", "chilled/svamp": "svamp", "tau/commonsense_qa": "commonsense_qa",
                "commonsenseqa": "commonsense_qa", "deepmind/aqua_rat": "aqua_rat", "aqua": "aqua_rat"}


def load_dataset(repo: str, *args: Any, split: str, **kw: Any):
    """``datasets.load_dataset``, but without a reachable hub it reads the cache alone (no minute
    of retries), and any failure is one line: not cached (how to get a local copy) or the cause."""
    import datasets

    from ..hub import hub_reachable, not_cached
    config = getattr(datasets, "config", None)
    offline, saved = not hub_reachable(), getattr(config, "HF_HUB_OFFLINE", False)
    if config is not None:
        config.HF_HUB_OFFLINE = saved or offline
    try:
        return datasets.load_dataset(repo, *args, split=split, **kw)
    except (OSError, ValueError) as e:  # ConnectionError, FileNotFoundError, a bad split name
        if offline and not isinstance(e, ValueError):
            raise not_cached("dataset", repo, dataset=True) from None
        raise UserError(f"cannot load hub dataset '{repo}' split '{split}': {str(e).splitlines()[0]}") from None
    finally:
        if config is not None:
            config.HF_HUB_OFFLINE = saved


def load_hf_dataset(name: str, split: str, **kw: Any) -> list[Example]:
    """A standard set from the Hugging Face hub (needs network or a warm cache); ``kw`` goes to
    ``datasets.load_dataset`` (cache_dir, revision, ...)."""
    key = _HUB_ALIASES.get(name.lower(), name.lower())
    if key not in HUB_DATASETS:
        raise UserError(f"unknown hub dataset '{name}'; supported: {', '.join(HUB_DATASETS)}")
    examples: list[Example] = []
    if key == "gsm8k":
        rows = load_dataset("openai/gsm8k", "main", split=split, **kw)
        src = _Source(Path(f"hf:openai/gsm8k/{split}"), array=True)
        examples = [_gsm8k_example(r, f"gsm8k-{split}-{i}", src, i) for i, r in enumerate(rows)]
    elif key == "svamp":
        src = _Source(Path(f"hf:ChilleD/SVAMP/{split}"), array=True)
        for i, r in enumerate(load_dataset("ChilleD/SVAMP", split=split, **kw)):
            question = r.get("question_concat") or f"{r['Body'].strip()} {r['Question'].strip()}"
            examples.append(Example(id=str(r.get("ID") or f"svamp-{split}-{i}"), question=question.strip(),
                                    answer=src.gold(r["Answer"], "number", i, "Answer"),
                                    answer_type="number", task="svamp",
                                    meta={"equation": r.get("Equation"), "type": r.get("Type")}))
    elif key == "commonsense_qa":
        for r in load_dataset("tau/commonsense_qa", split=split, **kw):
            if not r["answerKey"]:  # the official test split is unlabeled
                continue
            examples.append(Example(id=r["id"], question=r["question"], answer=r["answerKey"].upper(),
                                    answer_type="choice", choices=parse_choices(r["choices"]),
                                    task="commonsense_qa", meta={"concept": r.get("question_concept")}))
        if not examples:
            raise UserError(f"hub dataset commonsense_qa has no gold answers in split '{split}'; "
                            "use 'validation'")
    else:
        for i, r in enumerate(load_dataset("deepmind/aqua_rat", "raw", split=split, **kw)):
            examples.append(Example(id=f"aqua_rat-{split}-{i}", question=r["question"].strip(),
                                    answer=r["correct"].strip().upper(), answer_type="choice",
                                    choices=parse_choices(r["options"]),
                                    rationale=r["rationale"].strip() or None, task="aqua_rat"))
    return _nonempty(examples, f"hf:{key} split '{split}'")


# ----- splits ---------------------------------------------------------------------------------------

def train_test_split(examples: list[Example], test_fraction: float = 0.2,
                     seed: int = 0) -> tuple[list[Example], list[Example]]:
    """Seeded shuffle then cut, so the same file, fraction and seed always give the same split."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if len(examples) < 2:
        raise UserError(f"cannot split {len(examples)} example(s) into train and test")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = min(max(1, round(len(examples) * test_fraction)), len(examples) - 1)
    test = [examples[i] for i in order[:n_test]]
    train = [examples[i] for i in order[n_test:]]
    return train, test

