"""Student loading: any Hugging Face causal LM (id or path), LoRA through peft, or a tiny LLaMA.

``tiny`` students are built from a config with a tokenizer trained on the task text, so tests and
the demo run offline on a CPU in seconds. Everything saved by the trainer loads back with plain
``AutoModelForCausalLM.from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from ..errors import UserError
from .tokenizer import train_tokenizer

# name -> (hidden, layers, heads, mlp); "micro" is for unit tests, "tiny" for the demo and benches.
TINY_SIZES: dict[str, tuple[int, int, int, int]] = {
    "micro": (32, 1, 2, 64),
    "mini": (64, 2, 4, 192),
    "tiny": (128, 3, 4, 384),
    "small": (256, 4, 8, 768),
}


def is_tiny(spec: str) -> bool:
    return spec.split(":")[0] in TINY_SIZES


def build_tiny_student(spec: str, texts: Iterable[str], *, vocab_size: int = 600,
                       max_positions: int = 1024, seed: int = 0):
    """A fresh LLaMA-style model named by ``spec`` ("tiny", "micro", "small"), tokenizer from ``texts``."""
    name = spec.split(":")[0]
    hidden, layers, heads, mlp = TINY_SIZES[name]
    tok = train_tokenizer(texts, vocab_size=vocab_size)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model, tok


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    tok = AutoTokenizer.from_pretrained(spec)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_student(spec: str, texts: Iterable[str] | None = None, *, vocab_size: int = 600,
                 lora_r: int = 0, dtype: str = "auto", seed: int = 0):
    """Return ``(model, tokenizer)`` for ``spec``: a tiny size name, a local path or a hub id."""
    if is_tiny(spec):
        if texts is None:
            raise UserError(f"student '{spec}' needs training text to build its tokenizer")
        return build_tiny_student(spec, texts, vocab_size=vocab_size, seed=seed)
    if not Path(spec).exists() and spec.count("/") != 1:
        raise UserError(f"student '{spec}' is neither a tiny size ({', '.join(TINY_SIZES)}), "
                        "a local folder, nor a hub id like 'Qwen/Qwen2.5-0.5B'")
    try:
        tok = load_tokenizer(spec)
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=dtype)
    except OSError as e:
        raise UserError(f"cannot load student '{spec}': {str(e).splitlines()[0]}") from None
    if lora_r > 0:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    return model, tok


def load_frozen(ref: str, what: str = "model"):
    """``(model, tokenizer)`` of a trained causal LM (a run folder, a local path or a hub id) to use
    frozen: eval mode, no gradients. Teachers (KD) and SoftCoT/SemCoT's frozen models load this way;
    ``what`` names the role in the one-line error a bad path gives."""
    try:
        tokenizer = load_tokenizer(ref)
        model = AutoModelForCausalLM.from_pretrained(ref, dtype="auto")
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load {what} '{ref}': {str(e).splitlines()[0]}") from None
    model.eval().requires_grad_(False)
    return model, tokenizer
