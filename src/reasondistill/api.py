"""The Python API: the same verbs, options and run folders as the CLI.

``train``, ``evaluate`` and ``demo`` take exactly the CLI's options as keywords (their definitions
are in commands.py; ``help(reasondistill.train)`` lists them) and check them the same way. The run
folder's files are described in runfolder.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch

from .commands import DemoOptions, EvalOptions, TrainConfig, TrainOptions
from .errors import UserError
from .evaluation import evaluate as evaluate_predictions
from .io import atomic_write_json, atomic_write_text
from .kd import KDConfig, teacher_spec, tiny_student_for_teacher, use_stored_logits
from .layout import layout_from_record, resolve_layout
from .methods import format_question, get_method
from .models import apply_lora, is_tiny, load_student, load_tokenizer
from .models.student import tiny_model
from .options import build, call_values, takes
from .processes import process_state
from .runfolder import CALL_FILE, METRICS_FILE, RUN_FILE, abandon, check_writable_dir, prepare, read_record, start
from .runfolder import write_record
from .tasks import Example, load_task
from .training import train as run_training

__all__ = ["CALL_FILE", "RUN_FILE", "TrainConfig", "demo", "evaluate", "load_run", "train"]
TEMPLATE_WORDS = "Question: Choices: Answer: Rationale: [answer] [rationale] Therefore, the answer is"
TRAIN_ARGS = ("method", "data", "out")
EVAL_ARGS = ("model", "data")


def filter_rationales(examples: list[Example], keep: str = "correct") -> list[Example]:
    """Keep examples whose teacher answer matches gold (``keep='correct'``) or all of them."""
    if keep not in ("correct", "all"):
        raise UserError(f"--keep must be 'correct' or 'all', not '{keep}'")
    if keep == "all":
        return examples
    return [ex for ex in examples if ex.teacher_correct is not False]


def student_texts(examples: list[Example]) -> list[str]:
    """What a tiny student's tokenizer is trained on: the task's text and the templates."""
    texts = [TEMPLATE_WORDS]
    for ex in examples:
        texts += [format_question(ex), ex.answer, ex.rationale or ""]
    return texts


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@takes(TrainOptions, positional=TRAIN_ARGS)
def train(*args: Any, **kwargs: Any) -> dict:
    """Train a student with ``method`` on ``data`` and save it in the run folder ``out``; returns
    the run record. ``training=`` (a mapping or TrainConfig of the optimisation options) is still
    read, as if its keys were given one by one."""
    values = call_values("train", TRAIN_ARGS, args, kwargs)
    legacy = values.pop("training", None)
    if legacy is not None:
        legacy = legacy.as_dict() if isinstance(legacy, TrainConfig) else dict(legacy)
        clash = sorted(k for k in legacy if k in values and values[k] != legacy[k])
        if clash:
            raise UserError(f"train(): {', '.join(clash)} given twice, in training= and as keywords")
        values = {**legacy, **values}
    return run_train(build(TrainOptions, [("keyword:train", values)]))


def run_train(o: TrainOptions) -> dict:
    """``train`` from checked options. The output folder is checked before any data is loaded and
    written only once the student is built, so a failed start leaves nothing half-made."""
    out = Path(o.out)
    state = process_state()  # before anything else, so that several launched processes form one job
    check_writable_dir(out)
    # Token-level KD is the trainer's: the KD keys among the method's options (--kd-loss, --option
    # teacher_model=..., a grid row's options) go to the training config.
    method_options = o.all_method_options()
    kd_given = {k: method_options.pop(k) for k in KDConfig.keys() if k in method_options}
    config = o.training().model_copy(update=kd_given)
    kd = config.kd()  # checked before any work
    method_obj = get_method(o.method, **method_options)
    if config.packing:  # refused before any data is loaded (the trainer checks again for direct callers)
        from .training.packing import check_method
        check_method(method_obj, kd=kd.enabled)
    seed = o.seed
    examples = load_task(o.data, o.split, n=o.n, seed=seed if o.split_seed is None else o.split_seed,
                         hallucination=o.hallucination, test_fraction=o.test_fraction, format=o.format)
    kept = filter_rationales(examples, o.keep) if method_obj.uses_rationale else examples
    if not kept:
        raise UserError(f"no examples left in '{o.data}' after filtering (--keep {o.keep})")
    kept, too_long = drop_too_long(kept, o.max_example_chars)
    if not kept:
        raise UserError(f"every example of '{o.data}' is longer than --max-example-chars {o.max_example_chars}")
    kd = use_stored_logits(kd, o.data, method_obj.token_layout)  # KD from logits saved beside the data
    config = config.model_copy(update={"teacher_logits": kd.teacher_logits})
    call = {**o.as_dict(), "method_options": {**method_obj.options, **kd_given}}
    prepare(out, call, resume=o.resume, overwrite=o.overwrite)  # before the student is built or trained

    tiny = is_tiny(o.student)
    kd_teacher = teacher_spec(kd)
    state.wait_for_everyone()  # every process checked the folder before the main one writes to it
    created = False
    # A tiny student's tokenizer is trained once, by the main process, which then makes the folder
    # ready (cleared with --overwrite, the call saved) and writes it; the others wait and read it.
    with state.main_process_first():
        if tiny and kd_teacher:  # token-level KD compares distributions id by id: share the teacher's tokenizer
            model, tokenizer = tiny_student_for_teacher(o.student, kd_teacher, seed=seed)
            model = apply_lora(model, o.lora_r) if o.lora_r > 0 else model
        elif tiny and (not state.is_main_process or o.resume and (out / "tokenizer.json").exists()):
            tokenizer = load_tokenizer(str(out))  # the main process's, or the one the checkpoint was trained with
            model = tiny_model(o.student, tokenizer, seed=seed)
            model = apply_lora(model, o.lora_r) if o.lora_r > 0 else model
        else:
            model, tokenizer = load_student(o.student, student_texts(kept), vocab_size=o.vocab_size,
                                            lora_r=o.lora_r, seed=seed)
        layout = resolve_layout(tokenizer, o.chat_template, supported=method_obj.chat_layout, method=o.method)
        method_obj.use_layout(layout)
        if state.is_main_process:
            created = start(out, call, overwrite=o.overwrite)  # only now: a failed start leaves nothing
            if tiny:
                tokenizer.save_pretrained(str(out))
    try:
        summary = run_training(method_obj, model, tokenizer, kept, out, config, resume=o.resume, tiny=tiny,
                               progress=o.progress)
    except BaseException:
        if state.is_main_process:
            abandon(out, created)
        raise
    target_lengths = [sum(1 for s in f.spans if s) for ex in kept[:500] for f in method_obj.features(ex, tokenizer)]
    record = {"method": o.method, "method_options": method_obj.options, "data": o.data, "student": o.student,
              "answer_type": kept[0].answer_type, "n_train": len(kept), "n_loaded": len(examples),
              "n_too_long": too_long, "max_new_tokens": int(max(target_lengths) * 1.25) + 8, "train": summary,
              "seed": seed, "hallucination": o.hallucination, "layout": layout.describe(),
              "kd": kd.to_dict() if kd.enabled else None, **method_obj.run_info()}
    if state.is_main_process:  # under `accelerate launch`, one process writes the run folder
        unwrapped = model.merge_and_unload() if o.lora_r > 0 and hasattr(model, "merge_and_unload") else model
        layout.mark_ends(unwrapped)
        method_obj.save(out, unwrapped, tokenizer)
        write_record(out, record)  # last: from now on the folder is a finished run
    return record


def drop_too_long(examples: list[Example], max_chars: int) -> tuple[list[Example], int]:
    """Examples whose question + rationale + answer fit in ``max_chars`` characters, and how many did
    not (with a warning): one huge record must not make tokenizer training take minutes."""
    fit = [ex for ex in examples if len(ex.question) + len(ex.rationale or "") + len(ex.answer) <= max_chars]
    skipped = len(examples) - len(fit)
    if skipped and process_state().is_main_process:
        print(f"reasondistill: warning: skipped {skipped} example(s) longer than {max_chars} characters "
              "(--max-example-chars)", file=sys.stderr)
    return fit, skipped


def load_run(model_dir: str | Path):
    """(method, model, tokenizer, record) of a finished run folder, the model on the best device."""
    record = read_record(model_dir)
    method = get_method(record["method"], **record.get("method_options", {}))
    model, tokenizer = method.load(Path(model_dir), default_device())
    method.use_layout(layout_from_record(tokenizer, record.get("layout")))
    return method, model, tokenizer, record


def think_budgets(value) -> list[int | None]:
    """Thinking budgets from an int, None, ``"none"``, a list, or text like ``"0,64,256,none"``."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",") if isinstance(value, str) else [value]
    budgets: list[int | None] = []
    for item in items:
        text = str(item).strip().lower()
        if item is None or text in ("none", "unlimited", "null", ""):
            budgets.append(None)
        elif text.isdigit():
            budgets.append(int(text))
        else:
            raise UserError(f"--think-budget takes whole numbers >= 0 or 'none', comma-separated; got '{item}'")
    return budgets


def budget_name(budget: int | None) -> str:
    return "budget-none" if budget is None else f"budget-{budget}"


@takes(EvalOptions, positional=EVAL_ARGS)
def evaluate(*args: Any, **kwargs: Any) -> dict:
    """Evaluate the run folder ``model`` on ``data``; metrics.json goes to ``out`` (default: ``model``).
    For a file, ``seed`` and ``test_fraction`` pick the split: pass the ones training used.

    ``think_budget`` (think-first students) forces the answer after that many thinking tokens. Several
    budgets (``"0,64,none"``) make a sweep: each budget's metrics.json and predictions.jsonl go to
    ``out/budgets/budget-N/``, and the top-level metrics.json is the last budget's with a ``budgets``
    list holding one row per budget (accuracy and time to answer)."""
    return run_evaluate(build(EvalOptions, [("keyword:evaluate", call_values("evaluate", EVAL_ARGS, args, kwargs))]))


def run_evaluate(o: EvalOptions) -> dict:
    """``evaluate`` from checked options; the run folder, the budgets and the output folder are checked first."""
    out = Path(o.out or o.model)
    saved = read_record(o.model)
    budgets = think_budgets(o.think_budget)
    if budgets != [None]:  # refuse a budget before loading anything
        checker = get_method(saved["method"], **saved.get("method_options", {}))
        for b in budgets:
            checker.check_budget(b)
    check_writable_dir(out)
    method, student, tokenizer, record = load_run(o.model)
    examples = load_task(o.data, o.split, n=o.n, seed=o.seed, test_fraction=o.test_fraction, format=o.format)
    rows = []
    for b in budgets:
        where = out if len(budgets) == 1 else out / "budgets" / budget_name(b)
        metrics = evaluate_predictions(method, student, tokenizer, examples, out_dir=where, batch_size=o.batch_size,
                                       max_new_tokens=o.max_new_tokens or record["max_new_tokens"], explain=o.explain,
                                       similarity=o.similarity and o.explain,
                                       similarity_encoder=o.similarity_encoder, progress=o.progress, think_budget=b)
        metrics.update({"data": o.data, "split": o.split, "seed": o.seed, "test_fraction": o.test_fraction,
                        "n_requested": o.n, "think_budget": b})
        metrics.update({k: record[k] for k in ("trainable_params", "frozen_params") if k in record})
        if len(budgets) > 1:
            atomic_write_json(where / METRICS_FILE, metrics)
        rows.append(metrics)
    metrics = dict(rows[-1])
    if len(budgets) > 1:
        metrics["budgets"] = [{k: r.get(k) for k in BUDGET_KEYS} for r in rows]
    atomic_write_json(out / METRICS_FILE, metrics)
    return metrics


BUDGET_KEYS = ("think_budget", "accuracy", "answered", "tokens_to_answer", "ms_to_answer", "tokens_total", "ms_total",
               "forced_answer_fraction")


# ----- demo --------------------------------------------------------------------------------------

DEMO = {  # coin_flip on a "mini" student (64-d, 2 layers): PT's advantage shows within 300 steps
    "full": {"task": "synthetic/coin_flip", "student": "mini", "n_train": 1000, "n_test": 200, "max_steps": 300,
             "batch_size": 32, "lr": 3e-3},
    "quick": {"task": "synthetic/coin_flip", "student": "mini", "n_train": 1000, "n_test": 100, "max_steps": 120,
              "batch_size": 32, "lr": 3e-3},
}
DEMO_METHODS = ["answer_only", "pre_thinking", "prefix", "post_thinking", "pst"]


@takes(DemoOptions, positional=("out",))
def demo(*args: Any, **kwargs: Any) -> list[dict]:
    """Train a tiny student with each method on a synthetic task whose training rationales are
    ``hallucination`` corrupted, evaluate on a clean test set, and write the comparison. A rerun
    replaces the demo's own run folders."""
    o = build(DemoOptions, [("keyword:demo", call_values("demo", ("out",), args, kwargs))])
    spec = DEMO["quick" if o.quick else "full"]
    out = Path(o.out)
    rows = []
    started = time.perf_counter()
    for name in o.methods or DEMO_METHODS:
        t0 = time.perf_counter()
        run_dir = out / name
        train(name, spec["task"], run_dir, student=spec["student"], n=spec["n_train"], seed=o.seed,
              hallucination=o.hallucination, max_steps=spec["max_steps"], batch_size=spec["batch_size"],
              lr=spec["lr"], checkpoint_every=0, overwrite=True, progress=o.progress)
        metrics = evaluate(run_dir, spec["task"], split="test", n=spec["n_test"], seed=o.seed, progress=o.progress)
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(metrics)
    table = comparison_markdown(rows)
    atomic_write_json(out / "comparison.json", {"task": spec["task"], "hallucination": o.hallucination,
                                                "quick": o.quick, "seconds": round(time.perf_counter() - started, 1),
                                                "rows": rows})
    atomic_write_text(out / "comparison.md", table + "\n")
    return rows


def comparison_markdown(rows: list[dict]) -> str:
    """One table: method, accuracy, the share answered (a parseable answer; an unexplained zero is
    usually a student that never writes the answer marker), tokens and milliseconds to the answer,
    and to the end."""
    lines = ["| method | accuracy | answered | tokens to answer | ms to answer | tokens total | ms total |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['accuracy']:.3f} | {r.get('answered', float('nan')):.2f} | "
                     f"{r['tokens_to_answer']:.1f} | "
                     f"{r['ms_to_answer']:.2f} | {r['tokens_total']:.1f} | {r['ms_total']:.2f} |")
    return "\n".join(lines)
