"""From examples to batches: features, truncation that never cuts an answer, padding, length grouping."""

from __future__ import annotations

import random

import torch

from ..errors import UserError
from ..methods import ANSWER, Feature, Method
from ..tasks import Example


def collate(features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of features into tensors; scalar extras are stacked."""
    width = max(len(f.input_ids) for f in features)
    batch = {
        "input_ids": torch.full((len(features), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
        "spans": torch.zeros((len(features), width), dtype=torch.long),
    }
    if any(f.weights is not None for f in features):
        batch["weights"] = torch.zeros((len(features), width))
    for i, f in enumerate(features):
        n = len(f.input_ids)
        batch["input_ids"][i, :n] = torch.tensor(f.input_ids)
        batch["attention_mask"][i, :n] = 1
        batch["spans"][i, :n] = torch.tensor(f.spans)
        if "weights" in batch:
            batch["weights"][i, :n] = torch.tensor(f.weights if f.weights is not None else [1.0] * n)
    for key in features[0].extras:
        values = [f.extras[key] for f in features]
        if isinstance(values[0], (list, tuple)):  # per-token extras: right-padded with 0
            padded = torch.zeros((len(features), width), dtype=torch.tensor(values[0][:1] or [0]).dtype)
            for i, v in enumerate(values):
                padded[i, :len(v)] = torch.tensor(v)
            batch[key] = padded
        else:
            batch[key] = torch.tensor(values)
    return batch


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle, then sort within windows of 50 batches so each batch pads little, then shuffle the
    batches: most of the padding saving of full sorting, with the randomness of shuffling."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def example_batches(groups: list[int], lengths: list[int], batch_size: int, seed: int,
                    group_by_length: bool = True) -> list[list[int]]:
    """Batches of sequence indices in which an example's sequences stay together, about
    ``batch_size`` sequences each: a method that makes several sequences of one example (prefix's
    answer and rationale tasks, adaptive's two formats) trains all of them in every step, instead of
    length grouping sorting them into batches of their own. One sequence per example: plain batches."""
    units: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        units.setdefault(g, []).append(i)
    members = list(units.values())
    per_batch = max(1, round(batch_size * len(members) / max(1, len(groups))))
    if group_by_length:
        unit_batches = length_grouped_batches([max(lengths[i] for i in m) for m in members], per_batch, seed)
    else:
        order = list(range(len(members)))
        random.Random(seed).shuffle(order)
        unit_batches = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
    return [[i for u in batch for i in members[u]] for batch in unit_batches]


def check_examples(method: Method, examples: list[Example]) -> None:
    """Fail early, naming the example, when a rationale method gets examples without rationales."""
    if not examples:
        raise UserError("no training examples")
    for ex in examples:
        if method.uses_rationale and not (ex.rationale or "").strip():
            raise UserError(f"method '{method.name}' needs a rationale, but example '{ex.id}' has none "
                            "(collect them with `reasondistill teach`, or use answer_only)", field="rationale")


def truncate(feature: Feature, max_length: int) -> Feature | None:
    """``feature`` cut to ``max_length`` tokens when its answer ends within them (the rationale's
    tail goes), else None: a sequence is never trained with part of its answer missing."""
    if len(feature.input_ids) <= max_length:
        return feature
    answer_end = max((i for i, s in enumerate(feature.spans) if s == ANSWER), default=-1)
    if answer_end >= max_length:
        return None
    f = feature
    f.input_ids, f.spans = f.input_ids[:max_length], f.spans[:max_length]
    f.weights = f.weights[:max_length] if f.weights is not None else None
    f.extras = {k: v[:max_length] if isinstance(v, (list, tuple)) else v for k, v in f.extras.items()}
    return f


def build_features(method: Method, examples: list[Example], tokenizer, max_length: int,
                   stats: dict[str, int] | None = None, groups: list[int] | None = None) -> list[Feature]:
    """Every example's training sequences, truncated by ``truncate``; ``stats`` (when given) counts
    the ``cut`` and ``dropped`` sequences, ``groups`` (when given) gets each sequence's example index."""
    features = []
    cut = dropped = 0
    for n, ex in enumerate(examples):
        for f in method.features(ex, tokenizer):
            longer = len(f.input_ids) > max_length
            kept = truncate(f, max_length)
            if kept is None:
                dropped += 1
                continue
            cut += longer
            features.append(kept)
            if groups is not None:
                groups.append(n)
    if stats is not None:
        stats.update(cut=cut, dropped=dropped)
    if examples and not features:
        raise UserError(f"every training sequence is longer than --max-length {max_length} before its answer ends "
                        f"({dropped} dropped); raise --max-length")
    return features
