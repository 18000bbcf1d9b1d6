"""Students, their tokenizers, and the frozen semantic encoder."""

from .encoder import DEFAULT_ENCODER, SemanticEncoder
from .student import (TINY_SIZES, apply_lora, build_tiny_student, is_tiny, load_frozen, load_student, load_tokenizer,
                      prepare_tokenizer)
from .tokenizer import train_tokenizer

__all__ = ["DEFAULT_ENCODER", "SemanticEncoder", "TINY_SIZES", "apply_lora", "build_tiny_student", "is_tiny",
           "load_frozen", "load_student", "load_tokenizer", "prepare_tokenizer", "train_tokenizer"]
