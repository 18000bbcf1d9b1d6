"""The KD term of one training run: the teacher (online) or its stored logits (offline), the
divergence, and TAID's schedule.

The trainer asks for a per-chunk function on the positions the method trains (``chunk_term``); the
chunked loss path calls it with the student's logits of each chunk of those positions, so KD covers
exactly the method's target tokens and the trainer weighs it with the method's own weights. The
teacher is frozen, in eval mode, moved to the student's device on first use, and never part of the
trained modules or the run folder; its logits, like the student's, exist one chunk at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..loss import lm_head
from .config import KDConfig
from .divergences import TAIDLoss, make_divergence
from .store import TeacherLogits, logits_path
from .taid import TAIDSchedule
from .teacher import load_teacher, teacher_path
from .tokenizers import check_same_tokenizer, probe_ids, vocab_list


class Distiller:
    def __init__(self, config: KDConfig, tokenizer) -> None:
        self.config = config
        self.weight = float(config.kd_weight)
        self.divergence = make_divergence(config.kd_loss, temperature=float(config.kd_temperature),
                                          beta=float(config.kd_beta))
        self.taid = TAIDSchedule() if isinstance(self.divergence, TAIDLoss) else None
        self.teacher = None
        self.store = None
        if config.teacher_logits:
            self.store = TeacherLogits(config.teacher_logits)
            check_same_tokenizer(tokenizer, self.store.meta["vocab"], self.store.meta["teacher"],
                                 json.loads(self.store.meta["probe"]) if "probe" in self.store.meta else None)
        else:
            self.teacher, teacher_tokenizer = load_teacher(config.teacher_model)
            check_same_tokenizer(tokenizer, vocab_list(teacher_tokenizer), config.teacher_model,
                                 probe_ids(teacher_tokenizer))

    def chunk_term(self, batch: dict[str, torch.Tensor], positions: torch.Tensor):
        """``f(student_logits [n, V], start, stop) -> divergence [n]`` for rows ``start:stop`` of
        ``positions`` ``[B, T-1]`` (row-major), the teacher's side prepared once for the batch."""
        if self.taid is not None:
            self.divergence.t = self.taid.t
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if self.store is not None:
            support, teacher = self.store.targets(ids, mask, positions)
            device = ids.device
            support, teacher = support.to(device).long(), teacher.to(device)

            def term(student: torch.Tensor, start: int, stop: int) -> torch.Tensor:
                return self.divergence(student, teacher[start:stop], support[start:stop])
            return term
        if next(self.teacher.parameters()).device != ids.device:
            self.teacher.to(ids.device)
        head = lm_head(self.teacher)
        with torch.no_grad():
            rows = head.body(input_ids=ids, attention_mask=mask)[:, :-1][positions]

        def term(student: torch.Tensor, start: int, stop: int) -> torch.Tensor:
            with torch.no_grad():
                teacher = head.logits(rows[start:stop])
            width = min(student.size(-1), teacher.size(-1))  # padded vocab rows differ within a family
            return self.divergence(student[..., :width], teacher[..., :width])
        return term

    @property
    def t(self) -> float | None:
        return self.taid.t if self.taid is not None else None

    def end_step(self, value: float, step: int, max_steps: int) -> None:
        """After each optimiser step: the step's KD objective drives TAID's t."""
        if self.taid is not None:
            self.taid.record(value)
            self.taid.step(step, max_steps)

    def state_dict(self) -> dict:
        return {"taid": self.taid.state_dict()} if self.taid is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.taid is not None and "taid" in state:
            self.taid.load_state_dict(state["taid"])


def teacher_spec(config: KDConfig) -> str | None:
    """The teacher KD names: ``teacher_model``, else the one recorded in ``teacher_logits``."""
    if config.teacher_model:
        return config.teacher_model
    if config.teacher_logits:
        return TeacherLogits.read_metadata(config.teacher_logits)["teacher"]
    return None


def use_stored_logits(config: KDConfig, data: str | Path, layout: str | None) -> KDConfig:
    """With ``teacher_model`` set and no ``teacher_logits``, the logits ``teach --save-logits`` left
    beside the data file when they come from the same teacher and hold this layout, so the teacher
    need not sit in memory during training."""
    path = logits_path(data)
    if not config.teacher_model or config.teacher_logits or not Path(data).is_file() or not path.is_file():
        return config
    meta = TeacherLogits.read_metadata(path)
    if teacher_path(meta["teacher"]) == teacher_path(config.teacher_model) and layout in json.loads(meta["layouts"]):
        config.teacher_logits = str(path)
    return config
