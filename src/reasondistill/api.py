"""The Python API: the same verbs, options and run folders as the CLI.

A run folder is self-describing: ``reasondistill.json`` (method, options, data, student, training
summary), ``train_call.json`` (the resolved call; ``config.json`` is the saved model's own),
``metrics.jsonl`` (training curve), the student in Hugging Face format (loads with
``AutoModelForCausalLM.from_pretrained``), the method's extra modules, and, after evaluation,
``metrics.json`` and ``predictions.jsonl``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from .errors import UserError
from .evaluation import evaluate as evaluate_predictions
from .io import atomic_write_json, atomic_write_text, read_json
from .kd import teacher_spec, tiny_student_for_teacher, use_stored_logits
from .layout import layout_from_record, resolve_layout
from .methods import format_question, get_method
from .models import apply_lora, is_tiny, load_student, load_tokenizer
from .models.student import tiny_model
from .processes import process_state
from .tasks import Example, load_task
from .training import TrainConfig
from .training import train as run_training

RUN_FILE = "reasondistill.json"
CALL_FILE = "train_call.json"  # the resolved call; config.json is the saved model's own
TEMPLATE_WORDS = "Question: Choices: Answer: Rationale: [answer] [rationale] Therefore, the answer is"


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


def train(method: str, data: str, out: str | Path, *, student: str = "tiny", method_options: dict | None = None,
          training: TrainConfig | dict | None = None, split: str = "train", n: int | None = None,
          seed: int = 0, hallucination: float = 0.0, keep: str = "correct", format: str | None = None,
          vocab_size: int = 600, lora_r: int = 0, resume: bool = False, progress: bool = True,
          test_fraction: float = 0.2, split_seed: int | None = None, chat_template: str = "auto") -> dict:
    """Train a student with ``method`` on ``data`` and save it in ``out``. Returns the run record.

    ``split_seed`` (default: ``seed``) seeds the data alone: a file's train/test split or a synthetic
    generator, so several training seeds can share one split. ``chat_template``: ``auto`` writes
    every layout as the student's chat turns when its tokenizer has a template, ``none`` keeps plain
    text, a file path supplies the template."""
    out = Path(out)
    state = process_state()  # before anything else, so that several launched processes form one job
    config = training if isinstance(training, TrainConfig) else TrainConfig.from_dict(dict(training or {}))
    method_obj = get_method(method, **(method_options or {}))
    examples = load_task(data, split, n=n, seed=seed if split_seed is None else split_seed,
                         hallucination=hallucination, test_fraction=test_fraction, format=format)
    kept = filter_rationales(examples, keep) if method_obj.uses_rationale else examples
    if not kept:
        raise UserError(f"no examples left in '{data}' after filtering (--keep {keep})")
    use_stored_logits(method_obj, data)  # KD from logits saved beside the data, when they fit

    call = {"method": method, "data": data, "student": student, "method_options": method_obj.options,
            "training": asdict(config), "split": split, "n": n, "seed": seed, "hallucination": hallucination,
            "keep": keep, "format": format, "vocab_size": vocab_size, "lora_r": lora_r,
            "test_fraction": test_fraction, "split_seed": split_seed,
            "chat_template": chat_template}
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / CALL_FILE, call)

    tiny = is_tiny(student)
    kd_teacher = teacher_spec(method_obj.options)
    # A tiny student's tokenizer is trained once, by the main process; the others wait and read it.
    with state.main_process_first():
        if tiny and kd_teacher:  # token-level KD compares distributions id by id: share the teacher's tokenizer
            model, tokenizer = tiny_student_for_teacher(student, kd_teacher, seed=seed)
            model = apply_lora(model, lora_r) if lora_r > 0 else model
        elif tiny and (not state.is_main_process or resume and (out / "tokenizer.json").exists()):
            tokenizer = load_tokenizer(str(out))  # the main process's, or the one the checkpoint was trained with
            model = tiny_model(student, tokenizer, seed=seed)
            model = apply_lora(model, lora_r) if lora_r > 0 else model
        else:
            model, tokenizer = load_student(student, student_texts(kept), vocab_size=vocab_size, lora_r=lora_r,
                                            seed=seed)
        layout = resolve_layout(tokenizer, chat_template, supported=method_obj.chat_layout, method=method)
        method_obj.use_layout(layout)
        if tiny and state.is_main_process:
            tokenizer.save_pretrained(str(out))

    summary = run_training(method_obj, model, tokenizer, kept, out, config, resume=resume, tiny=tiny,
                           progress=progress)
    target_lengths = [sum(1 for s in f.spans if s) for ex in kept[:500] for f in method_obj.features(ex, tokenizer)]
    method_obj.finish(model, tokenizer, kept)
    record = {"method": method, "method_options": method_obj.options, "data": data, "student": student,
              "answer_type": kept[0].answer_type, "n_train": len(kept), "n_loaded": len(examples),
              "max_new_tokens": int(max(target_lengths) * 1.25) + 8, "train": summary, "seed": seed,
              "hallucination": hallucination, "layout": layout.describe(), **method_obj.run_info()}
    if state.is_main_process:  # under `accelerate launch`, one process writes the run folder
        unwrapped = model.merge_and_unload() if lora_r > 0 and hasattr(model, "merge_and_unload") else model
        layout.mark_ends(unwrapped)
        method_obj.save(out, unwrapped, tokenizer)
        atomic_write_json(out / RUN_FILE, record)
    return record


def load_run(model_dir: str | Path):
    """(method, model, tokenizer, record) of a trained run folder, the model on the best device."""
    model_dir = Path(model_dir)
    if not (model_dir / RUN_FILE).exists():
        raise UserError(f"not a trained run folder (no {RUN_FILE})", path=str(model_dir))
    record = read_json(model_dir / RUN_FILE)
    method = get_method(record["method"], **record.get("method_options", {}))
    model, tokenizer = method.load(model_dir, default_device())
    method.use_layout(layout_from_record(tokenizer, record.get("layout")))
    return method, model, tokenizer, record


def evaluate(model: str | Path, data: str, *, split: str = "test", n: int | None = None, seed: int = 0,
             out: str | Path | None = None, format: str | None = None, batch_size: int = 32,
             max_new_tokens: int | None = None, explain: bool = True, progress: bool = True,
             test_fraction: float = 0.2, similarity: bool = True, similarity_encoder: str | None = None) -> dict:
    """Evaluate the run folder ``model`` on ``data``; metrics.json goes to ``out`` (default: ``model``).
    For a file, ``seed`` and ``test_fraction`` pick the split: pass the ones training used.
    ``similarity_encoder`` measures rationale similarity in that encoder (default: ROUGE-L F1)."""
    method, student, tokenizer, record = load_run(model)
    examples = load_task(data, split, n=n, seed=seed, test_fraction=test_fraction, format=format)
    metrics = evaluate_predictions(method, student, tokenizer, examples, out_dir=out or model,
                                   batch_size=batch_size, max_new_tokens=max_new_tokens or record["max_new_tokens"],
                                   explain=explain, similarity=similarity and explain,
                                   similarity_encoder=similarity_encoder, progress=progress)
    metrics["data"] = data
    metrics["split"] = split
    metrics.update({k: record[k] for k in ("trainable_params", "frozen_params") if k in record})
    atomic_write_json(Path(out or model) / "metrics.json", metrics)
    return metrics


# ----- demo --------------------------------------------------------------------------------------

DEMO = {  # coin_flip on a "mini" student (64-d, 2 layers): PT's advantage shows within 300 steps
    "full": {"task": "synthetic/coin_flip", "student": "mini", "n_train": 1000, "n_test": 200, "max_steps": 300,
             "batch_size": 32, "lr": 3e-3},
    "quick": {"task": "synthetic/coin_flip", "student": "mini", "n_train": 1000, "n_test": 100, "max_steps": 120,
              "batch_size": 32, "lr": 3e-3},
}
DEMO_METHODS = ["answer_only", "pre_thinking", "prefix", "post_thinking", "pst"]


def demo(out: str | Path = "runs/demo", *, quick: bool = False, methods: list[str] | None = None,
         hallucination: float = 0.2, seed: int = 0, progress: bool = True) -> list[dict]:
    """Train a tiny student with each method on a synthetic task whose training rationales are
    ``hallucination`` corrupted, evaluate on a clean test set, and write the comparison."""
    spec = DEMO["quick" if quick else "full"]
    out = Path(out)
    rows = []
    started = time.perf_counter()
    for name in methods or DEMO_METHODS:
        t0 = time.perf_counter()
        run_dir = out / name
        training = {"max_steps": spec["max_steps"], "batch_size": spec["batch_size"], "lr": spec["lr"],
                    "seed": seed, "checkpoint_every": 0}
        train(name, spec["task"], run_dir, student=spec["student"], n=spec["n_train"], seed=seed,
              hallucination=hallucination, training=training, progress=progress)
        metrics = evaluate(run_dir, spec["task"], split="test", n=spec["n_test"], seed=seed, progress=progress)
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(metrics)
    table = comparison_markdown(rows)
    atomic_write_json(out / "comparison.json", {"task": spec["task"], "hallucination": hallucination,
                                                "quick": quick, "seconds": round(time.perf_counter() - started, 1),
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
