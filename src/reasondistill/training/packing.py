"""Packing (padding-free training): several training sequences in one row of up to ``max_length``.

Short sequences padded to their batch's longest spend compute on padding; packed rows are nearly
full. Each sequence keeps its own view: its ``position_ids`` restart at 0 where it starts, and its
tokens attend to its own tokens only. transformers 5 builds that block-diagonal causal mask from
the position ids alone when a forward gets no ``attention_mask`` and no cache
(``masking_utils.find_packed_sequence_indices``, for eager, sdpa and flash attention alike), so a
packed batch goes through the student as ``input_ids, position_ids, use_cache=False``
(``Method.forward_inputs``). :func:`check_model` verifies that once on a probe before training: a
student whose attention ignores packed position ids is refused, not trained across examples.

The first token of every packed sequence is marked ``PROMPT``: alone it is never predicted (nothing
precedes it), and in the row the previous sequence's last token must not learn to predict it. So a
packed row trains exactly the tokens its sequences trained alone, with the same weights, and the
step normalisation (target tokens of the optimiser step) is unchanged.

Which sequences share a row: best-fit decreasing (TRL's default ``bfd`` strategy) over the whole data
set, once before training; rows are then shuffled and batched like sequences (prefix's two tasks of
an example may land in different rows). Only methods whose loss is per-token pack
(``Method.packs``): a sequence-level term or pooling over a sequence's hidden states (pst, semcot),
soft thoughts spliced into the inputs (softcot), per-sequence fields (kpod's steps, adaptive's
format) would mix examples.
"""

from __future__ import annotations

import bisect

import torch

from ..errors import UserError
from ..methods import METHODS, PROMPT, Feature, Method


def packing_methods() -> list[str]:
    """The registered methods that support packing."""
    return [name for name, cls in METHODS.items() if cls.packs]


def check_method(method: Method, kd: bool) -> None:
    """One line when packing cannot apply to this run."""
    if not method.packs:
        raise UserError(f"method '{method.name}' does not support packing (its loss is not per-token); "
                        f"packing works with {', '.join(packing_methods())}")
    if kd:
        raise UserError("packing does not combine with token-level KD (teacher_model/teacher_logits): "
                        "the teacher's side is not packed; train without packing")


def join(parts: list[Feature]) -> Feature:
    """One packed feature: ids, spans (each part's first token a prompt token), weights where any
    part has them, and ``position_ids`` restarting at 0 for each part."""
    if any(f.extras for f in parts):
        raise ValueError("features with extras cannot be packed")
    weighted = any(f.weights is not None for f in parts)
    ids, spans, weights, positions = [], [], [], []
    for f in parts:
        n = len(f.input_ids)
        ids += f.input_ids
        spans += [PROMPT, *f.spans[1:]]
        if weighted:
            weights += list(f.weights) if f.weights is not None else [1.0] * n
        positions += range(n)
    return Feature(ids, spans, weights if weighted else None, {"position_ids": positions})


def pack(features: list[Feature], max_length: int) -> list[Feature]:
    """``features`` (each at most ``max_length`` tokens) packed best-fit decreasing into rows of at
    most ``max_length`` tokens; deterministic for a given input."""
    order = sorted(range(len(features)), key=lambda i: -len(features[i].input_ids))
    rows: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (tokens left, row), ascending: the tightest fit is found by bisect
    for i in order:
        n = len(features[i].input_ids)
        k = bisect.bisect_left(room, (n, -1))
        if k < len(room):
            left, row = room.pop(k)
            rows[row].append(i)
        else:
            left, row = max_length, len(rows)
            rows.append([i])
        if left - n > 0:
            bisect.insort(room, (left - n, row))
    return [join([features[i] for i in row]) for row in rows]


@torch.no_grad()
def check_model(model) -> None:
    """Refuse packing for a student whose forward does not keep packed sequences apart: two probe
    sequences packed in one row must give the logits they give alone."""
    was_training = model.training
    model.eval()
    try:
        embeddings = model.get_input_embeddings().weight
        vocab, device = embeddings.size(0), embeddings.device
        a = torch.arange(1, 8, device=device) * 7919 % vocab
        b = torch.arange(2, 7, device=device) * 104729 % vocab
        alone = [model(input_ids=x[None], use_cache=False).logits[0].float() for x in (a, b)]
        positions = torch.cat([torch.arange(len(a)), torch.arange(len(b))]).to(device)[None]
        packed = model(input_ids=torch.cat([a, b])[None], position_ids=positions, use_cache=False).logits[0].float()
        tol = 1e-3 if embeddings.dtype == torch.float32 else 3e-2  # bf16/fp16: other kernels, other rounding
        ok = torch.allclose(packed, torch.cat(alone), rtol=tol, atol=tol)
        why = "its attention crosses packed sequences"
    except (TypeError, ValueError, RuntimeError) as e:
        ok, why = False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        model.train(was_training)
    if not ok:
        raise UserError(f"packing: the student ({type(model).__name__}) does not keep packed sequences apart by "
                        f"position_ids ({why}); train without packing")
