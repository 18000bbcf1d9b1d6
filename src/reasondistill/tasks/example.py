"""The record every stage passes along: one question with its gold answer and, maybe, a rationale."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .answers import ANSWER_TYPES, AnswerType, is_correct

__all__ = ["ANSWER_TYPES", "AnswerType", "Example"]


@dataclass
class Example:
    """One reasoning problem.

    ``answer`` is the gold answer in canonical form (see ``tasks.answers.normalize``): "18", "B",
    "yes", "fnel". ``rationale`` is a teacher's step-by-step text when we have one;
    ``teacher_answer`` is the answer that teacher stated (used to filter wrong rationales).
    """

    id: str
    question: str
    answer: str
    answer_type: AnswerType = "text"
    choices: dict[str, str] | None = None
    rationale: str | None = None
    teacher_answer: str | None = None
    task: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def teacher_correct(self) -> bool | None:
        """Whether the teacher's stated answer matches gold; None when the teacher gave none."""
        if self.teacher_answer is None:
            return None
        return is_correct(self.teacher_answer, self.answer, self.answer_type)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, "")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Example":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)
