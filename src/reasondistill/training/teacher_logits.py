"""``save_teacher_logits``: the teacher's top-k logits over the training sequences of given layouts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..methods import METHODS, PROMPT, get_method
from .data import build_features

# Layouts stored by default: pre_thinking (x⊕r⊕y) and post_thinking (x⊕y⊕r, which pst shares).
DEFAULT_LAYOUTS = ("pre_thinking", "post_thinking")


def _layout_method(name: str, options: dict | None):
    """The method that builds layout (or method) ``name``'s sequences."""
    cls = METHODS.get(name)
    if cls is None:
        raise UserError(f"unknown method or layout '{name}'; valid: {', '.join(METHODS)}")
    if cls.token_layout is None:
        raise UserError(f"method '{name}' has no token layout a teacher can read (token-level KD does not apply)")
    return get_method(cls.token_layout if cls.token_layout in METHODS else name, **(options or {}))


@torch.no_grad()
def save_teacher_logits(teacher: str, data: str | Path | None, out_path: str | Path, k: int,
                        method: str | Sequence[str] = DEFAULT_LAYOUTS, *, method_options: dict | None = None,
                        examples: list | None = None, split: str = "all", n: int | None = None, seed: int = 0,
                        format: str | None = None, max_length: int = 512, batch_size: int = 8,
                        device: str | torch.device | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``teacher`` once over the training sequences of ``method`` (one name or several; pst maps
    to post_thinking's layout) built from ``data`` (a rationale file or task spec, loaded like
    ``train --data``) or ``examples``, and store its top-``k`` log-probabilities per target token in
    ``out_path`` (see ``kd.store``). Only positions from the last prompt token on are stored.
    Sequences are truncated at ``max_length`` like the trainer does: pass the training value.
    Returns ``{path, sequences, tokens, k, bytes, bytes_per_token, teacher}``."""
    from ..kd import load_teacher, write_teacher_logits
    from ..tasks import load_task

    if int(k) < 1:
        raise UserError(f"--save-logits needs k >= 1, not {k}")
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if examples is None:
        if data is None:
            raise UserError("save_teacher_logits needs data or examples")
        examples = load_task(str(data), split, n=n, seed=seed, format=format)
    layouts = [method] if isinstance(method, str) else list(method)
    methods = [_layout_method(name, method_options) for name in layouts]
    model, tokenizer = load_teacher(teacher, device)
    sequences: dict[int, tuple[list[int], int]] = {}  # key -> (ids, first stored position)
    from ..kd import sequence_key
    for name, m in zip(layouts, methods):
        usable = [ex for ex in examples if not m.uses_rationale or (ex.rationale or "").strip()]
        try:
            features = build_features(m, usable, tokenizer, max_length)
        except (UserError, RuntimeError) as e:  # e.g. kpod: its sequences come out of its training-time preparation
            raise UserError(f"cannot build {name}'s training sequences before training ({e}); "
                            "use an online teacher (--teacher-model) for this method") from None
        for f in features:
            targets = [i for i, s in enumerate(f.spans[1:]) if s != PROMPT]
            if targets:
                sequences.setdefault(sequence_key(f.input_ids), (f.input_ids, targets[0]))
    if not sequences:
        raise UserError("no training sequences to store teacher logits for (do the examples have rationales?)")
    return write_teacher_logits(model, tokenizer, sequences, out_path, k, teacher=str(teacher),
                                layouts=[m.token_layout for m in methods], max_length=max_length,
                                batch_size=batch_size, progress=progress)
