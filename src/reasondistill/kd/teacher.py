"""The open teacher model of token-level KD, and tiny students built on its tokenizer."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError


def teacher_path(spec: str) -> str:
    """A teacher spec (``ID``, ``hf:ID`` or a folder) as what ``from_pretrained`` takes."""
    spec = str(spec)
    if spec.startswith("hf:"):
        return spec[3:]
    if ":" in spec.split("/")[0] and not Path(spec).exists():
        raise UserError(f"teacher '{spec}' is not an open model: token-level KD needs its logits "
                        "(give a Hugging Face id or a local folder, optionally as hf:ID)")
    return spec


def load_teacher(spec: str, device: torch.device | str | None = None):
    """``(model, tokenizer)`` of a frozen teacher: eval mode, no gradients."""
    from ..models import load_frozen
    model, tokenizer = load_frozen(teacher_path(spec), "teacher")
    if device is not None:
        model.to(device)
    return model, tokenizer


def tiny_student_for_teacher(size: str, teacher: str, *, seed: int = 0, max_positions: int = 1024):
    """A fresh tiny LLaMA student (``micro``/``mini``/``tiny``/``small``) that uses the teacher's
    tokenizer, so token-level KD can compare their distributions id by id."""
    from ..models import load_tokenizer
    try:
        tokenizer = load_tokenizer(teacher_path(teacher))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the tokenizer of teacher '{teacher}': {str(e).splitlines()[0]}") from None
    return tiny_student_with_tokenizer(size, tokenizer, seed=seed, max_positions=max_positions), tokenizer


def tiny_student_with_tokenizer(size: str, tokenizer, *, seed: int = 0, max_positions: int = 1024):
    from transformers import LlamaConfig, LlamaForCausalLM

    from ..models import TINY_SIZES
    name = size.split(":")[0]
    if name not in TINY_SIZES:
        raise UserError(f"unknown tiny size '{size}'; valid: {', '.join(TINY_SIZES)}")
    hidden, layers, heads, mlp = TINY_SIZES[name]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=mlp,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max_positions, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
