"""The method registry: every distillation recipe by name (one file each in this folder)."""

from __future__ import annotations

from ..errors import UserError
from .adaptive import Adaptive
from .answer_only import AnswerOnly
from .base import ANSWER, PROMPT, RATIONALE, Feature, Method, Prediction, format_question
from .kpod import KPOD
from .post_thinking import PostThinking
from .pre_thinking import PreThinking
from .prefix import Prefix
from .pst import PostSemanticThinking
from .semcot import SemCoT
from .softcot import SoftCoT

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (AnswerOnly, PreThinking, Prefix, PostThinking, PostSemanticThinking, SoftCoT, SemCoT,
                              KPOD, Adaptive)
}
CORE_METHODS = ["answer_only", "pre_thinking", "prefix", "post_thinking", "pst"]


def get_method_class(name: str) -> type[Method]:
    """A method's class by registry name (its ``Options`` are the method's option definitions)."""
    if name not in METHODS:
        raise UserError(f"unknown method '{name}'; valid: {', '.join(METHODS)}")
    return METHODS[name]


def get_method(name: str, **options) -> Method:
    """Instantiate a method by registry name with its options."""
    return get_method_class(name)(**options)


__all__ = ["ANSWER", "CORE_METHODS", "METHODS", "PROMPT", "RATIONALE", "Feature", "Method", "Prediction",
           "format_question", "get_method", "get_method_class"]
