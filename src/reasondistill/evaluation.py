"""Evaluate a trained student: accuracy, the cost of an answer, and rationale consistency.

Generation is batched and greedy with the KV cache; each method's own stop rule applies (PT/PST
stop at the end of the answer line, then, timed apart, write the rationale). Times are wall-clock
per question: a batch's time divided by its size.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean

from tqdm.auto import tqdm

from .io import atomic_write_json, atomic_write_jsonl
from .methods import Method, Prediction
from .tasks import Example, chance_accuracy, extract_answer, is_correct


def score(method: Method, examples: list[Example], predictions: list[Prediction]) -> dict:
    """The metrics every method reports (top-level keys other tools rely on)."""
    correct = [is_correct(p.answer, ex.answer, ex.answer_type) for ex, p in zip(examples, predictions)]
    metrics = {
        "method": method.name,
        "n": len(examples),
        "accuracy": mean(correct) if correct else 0.0,
        "tokens_to_answer": mean(p.tokens_to_answer for p in predictions) if predictions else 0.0,
        "ms_to_answer": 1000 * mean(p.seconds_to_answer for p in predictions) if predictions else 0.0,
        "tokens_total": mean(p.tokens_total for p in predictions) if predictions else 0.0,
        "ms_total": 1000 * mean(p.seconds_total for p in predictions) if predictions else 0.0,
        "answered": mean(p.answer is not None for p in predictions) if predictions else 0.0,
        "chance": chance_accuracy(examples[0].answer_type, examples[0].choices) if examples else None,
    }
    # Consistency: does the answer the rationale argues for match the answer the student gave?
    pairs = [(ex, p) for ex, p in zip(examples, predictions) if p.rationale and p.answer is not None]
    agreed = [is_correct(extract_answer(p.rationale, ex.answer_type, ex.choices), p.answer, ex.answer_type)
              for ex, p in pairs]
    metrics["consistency"] = mean(agreed) if agreed else None
    return metrics


def evaluate(method: Method, model, tokenizer, examples: list[Example], *, out_dir: str | Path | None = None,
             batch_size: int = 32, max_new_tokens: int = 128, explain: bool = True,
             progress: bool = True) -> dict:
    """Answer every example, score, and (with ``out_dir``) write metrics.json and predictions.jsonl."""
    predictions: list[Prediction] = []
    chunk = max(batch_size * 4, 1)
    for start in tqdm(range(0, len(examples), chunk), desc=f"eval {method.name}", disable=not progress,
                      dynamic_ncols=True):
        predictions += method.answer(model, tokenizer, examples[start:start + chunk], batch_size=batch_size,
                                     max_new_tokens=max_new_tokens, explain=explain)
    metrics = score(method, examples, predictions)
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_json(out_dir / "metrics.json", metrics)
        atomic_write_jsonl(out_dir / "predictions.jsonl", [
            {"id": ex.id, "question": ex.question, "gold": ex.answer, "answer": p.answer,
             "correct": is_correct(p.answer, ex.answer, ex.answer_type), "text": p.text,
             "tokens_to_answer": p.tokens_to_answer, "tokens_total": p.tokens_total}
            for ex, p in zip(examples, predictions)])
    return metrics
