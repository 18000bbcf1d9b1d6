"""Evaluate a trained student: accuracy, the cost of an answer, and rationale consistency.

Generation is batched and greedy with the KV cache; each method's own stop rule applies (PT/PST
stop at the end of the answer line, then, timed apart, write the rationale). Times are wall-clock
per question: a batch's time divided by its size.

Two secondary metrics are easy to misread, so they come with what they need to be read honestly:

- ``consistency`` (does the answer agree with what the rationale concludes?) is counted over the
  answered questions whose rationale reaches a parseable conclusion, a share that differs a lot
  between methods (a post-thinking rationale written after the answer often trails off; a
  pre-thinking one ends on its answer line). It is always reported beside that share,
  ``rationale_concludes``, and tables show the two together.
- ``rationale_similarity`` compares the student's rationale with the teacher's. PST is trained to
  match the teacher's rationale in MiniLM's space, so measuring in that space would favour PST by
  construction. The default measure is therefore lexical and independent of every student: ROUGE-L
  F1 over lower-cased word tokens (the longest common subsequence; hand-written in a few lines, as
  the ``rouge-score`` package is not a dependency). ``similarity_encoder`` names a sentence encoder
  instead (then the mean cosine in its space). ``rationale_similarity_measure`` in metrics.json
  says which was used.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from statistics import mean

from tqdm.auto import tqdm

from .io import atomic_write_json, atomic_write_jsonl
from .methods import Method, Prediction
from .tasks import Example, chance_accuracy, is_correct, rationale_answer


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
    # Consistency: where the rationale argues for a readable answer, does it match the answer given?
    # Its denominator (answered questions whose rationale concludes) differs between methods, so it
    # is always reported with rationale_concludes, the share of answered rationales that conclude.
    argued = [(ex, p, rationale_answer(ex, p.rationale)) for ex, p in zip(examples, predictions)
              if p.rationale and p.answer is not None]
    agreed = [is_correct(claim, p.answer, ex.answer_type) for ex, p, claim in argued if claim is not None]
    metrics["consistency"] = mean(agreed) if agreed else None
    metrics["rationale_concludes"] = len(agreed) / len(argued) if argued else None
    # A method's numeric Prediction.extras, averaged over the predictions that have them (e.g.
    # adaptive's routing): a bool "x" becomes metrics["x_fraction"], a number "x" metrics["x_mean"].
    numeric: dict[str, list] = {}
    for p in predictions:
        for key, value in p.extras.items():
            if isinstance(value, (bool, int, float)):
                numeric.setdefault(key, []).append(value)
    for key, values in sorted(numeric.items()):
        name = f"{key}_fraction" if all(isinstance(v, bool) for v in values) else f"{key}_mean"
        metrics[name] = mean(map(float, values))
    return metrics


@lru_cache(maxsize=2)
def _encoder(name: str):
    from .models import SemanticEncoder
    return SemanticEncoder(name)


LEXICAL = "rouge_l_f1"
WORD = re.compile(r"\w+")


def rouge_l_f1(reference: str, candidate: str) -> float:
    """ROUGE-L F1 of two texts over lower-cased word tokens: the longest common subsequence's
    share of each text, combined as an F1 (0 when either text has no words)."""
    ref, cand = WORD.findall(reference.lower()), WORD.findall(candidate.lower())
    if not ref or not cand:
        return 0.0
    row = [0] * (len(cand) + 1)  # one row of the LCS table at a time
    for r in ref:
        diagonal = 0
        for j, c in enumerate(cand, 1):
            diagonal, row[j] = row[j], diagonal + 1 if r == c else max(row[j], row[j - 1])
    lcs = row[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rationale_similarity(examples: list[Example], predictions: list[Prediction],
                         encoder: str | None = None) -> tuple[float | None, str]:
    """(mean similarity, the measure's name) between the student's rationale and the reference
    rationale of the same question, over the questions where both sides have one (None when none
    do). Without ``encoder``: ROUGE-L F1; with one: the mean cosine in that encoder's space."""
    pairs = [(ex.rationale, p.rationale) for ex, p in zip(examples, predictions) if ex.rationale and p.rationale]
    measure = f"encoder:{encoder}" if encoder else LEXICAL
    if not pairs:
        return None, measure
    if not encoder:
        return mean(rouge_l_f1(a, b) for a, b in pairs), measure
    enc = _encoder(encoder)
    refs, outs = enc.encode([a for a, _ in pairs]), enc.encode([b for _, b in pairs])
    return float((refs * outs).sum(-1).mean()), measure


def evaluate(method: Method, model, tokenizer, examples: list[Example], *, out_dir: str | Path | None = None,
             batch_size: int = 32, max_new_tokens: int = 128, explain: bool = True,
             similarity: bool = False, similarity_encoder: str | None = None, progress: bool = True,
             think_budget: int | None = None) -> dict:
    """Answer every example, score, and (with ``out_dir``) write metrics.json and predictions.jsonl.
    ``similarity`` adds ``rationale_similarity`` (ROUGE-L F1, or cosine in ``similarity_encoder``);
    ``think_budget`` forces a think-first student's answer after that many thinking tokens."""
    if examples:  # warm-up: the first generate call pays one-off costs that are no method's fault
        method.answer(model, tokenizer, examples[:1], batch_size=1, max_new_tokens=2, explain=False)
    predictions: list[Prediction] = []
    chunk = max(batch_size * 4, 1)
    for start in tqdm(range(0, len(examples), chunk), desc=f"eval {method.name}", disable=not progress,
                      dynamic_ncols=True):
        predictions += method.answer(model, tokenizer, examples[start:start + chunk], batch_size=batch_size,
                                     max_new_tokens=max_new_tokens, explain=explain, think_budget=think_budget)
    metrics = score(method, examples, predictions)
    if think_budget is not None:
        metrics["think_budget"] = think_budget
    if similarity:
        value, measure = rationale_similarity(examples, predictions, similarity_encoder)
        metrics["rationale_similarity"], metrics["rationale_similarity_measure"] = value, measure
    if out_dir is not None:
        atomic_write_json(Path(out_dir) / "metrics.json", metrics)
        write_results(out_dir, examples, predictions)
    return metrics


def write_results(out_dir: str | Path, examples: list[Example], predictions: list[Prediction]) -> None:
    """predictions.jsonl: one row per question, what local and served evaluation both write."""
    atomic_write_jsonl(Path(out_dir) / "predictions.jsonl", [
        {"id": ex.id, "question": ex.question, "gold": ex.answer, "answer": p.answer,
         "correct": is_correct(p.answer, ex.answer, ex.answer_type), "text": p.text,
         "tokens_to_answer": p.tokens_to_answer, "tokens_total": p.tokens_total,
         **({"extras": p.extras} if p.extras else {})}  # e.g. adaptive's mode for this question
        for ex, p in zip(examples, predictions)])
