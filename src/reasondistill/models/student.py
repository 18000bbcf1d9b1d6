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
from ..hub import hub_reachable, is_hub_id, local_only, not_cached
from .tokenizer import train_tokenizer

# name -> (hidden, layers, heads, mlp); "micro" is for unit tests, "tiny" for the demo and benches.
# A student spec may add the tokenizer split: "mini:digits", "tiny:chars" (see models.tokenizer).
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
    """A fresh LLaMA-style model named by ``spec`` ("tiny", "micro", "small"), tokenizer from ``texts``.
    ``SIZE:SPLIT`` (``mini:digits``, ``tiny:chars``) picks the tokenizer's split (models.tokenizer)."""
    tok = train_tokenizer(texts, vocab_size=vocab_size, split=tokenizer_split(spec))
    return tiny_model(spec, tok, max_positions=max_positions, seed=seed), prepare_tokenizer(tok, spec)


def tokenizer_split(spec: str) -> str:
    """The tokenizer split a tiny spec names: ``mini:chars`` -> "chars"; plain ``mini`` -> "bpe"."""
    return spec.partition(":")[2] or "bpe"


def tiny_model(spec: str, tok: PreTrainedTokenizerBase, *, max_positions: int = 1024, seed: int = 0):
    """The fresh model of a tiny student for a tokenizer built already (e.g. by another process)."""
    hidden, layers, heads, mlp = TINY_SIZES[spec.split(":")[0]]
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
        tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def prepare_tokenizer(tok: PreTrainedTokenizerBase, name: str) -> PreTrainedTokenizerBase:
    """Bring any tokenizer to the conventions the trainer and decoders rely on, or refuse in one
    line: an eos token (sequences must end), a pad token (the eos when there is none), no
    ``token_type_ids`` (BERT-style tokenizers return them and causal LMs' ``generate`` refuses
    them), left padding for batched inference (the trainer right-pads on its own)."""
    if tok.eos_token is None:
        raise UserError(f"the tokenizer of '{name}' has no eos token, so a student could never learn to stop; "
                        "set one and save it (tok.eos_token = '</s>' or an existing token such as its sep "
                        "token; tok.save_pretrained(DIR)) and pass DIR")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.model_input_names = [n for n in tok.model_input_names if n != "token_type_ids"]
    tok.padding_side = "left"
    return tok


def load_tokenizer(spec: str, what: str = "student") -> PreTrainedTokenizerBase:
    """The tokenizer of a folder or hub id, with :func:`prepare_tokenizer`'s conventions."""
    try:
        tok = AutoTokenizer.from_pretrained(spec, local_files_only=local_only(spec))
    except (OSError, ValueError) as e:
        raise _load_error(what, spec, e) from None
    return prepare_tokenizer(tok, spec)


def _load_error(what: str, spec: str, e: Exception) -> UserError:
    if not Path(spec).exists() and not hub_reachable():
        return not_cached(what, spec)
    return UserError(f"cannot load {what} '{spec}': {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def _load_model(spec: str, what: str, dtype: str = "auto"):
    try:
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=dtype, local_files_only=local_only(spec))
    except (OSError, ValueError) as e:
        raise _load_error(what, spec, e) from None
    return model


def _match_special_ids(model, tok: PreTrainedTokenizerBase) -> None:
    """Configs saved without a pad id (GPT-2, GPT-NeoX) get the tokenizer's, so ``generate`` does
    not guess; the ids the tokenizer settled on are the ones decoding uses."""
    for cfg in (model.config, getattr(model, "generation_config", None)):
        if cfg is not None and getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = tok.pad_token_id


def apply_lora(model, lora_r: int):
    """LoRA adapters of rank ``lora_r`` on every linear layer (peft); the base weights freeze."""
    from peft import LoraConfig, get_peft_model
    return get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                                            target_modules="all-linear", task_type="CAUSAL_LM"))


def load_student(spec: str, texts: Iterable[str] | None = None, *, vocab_size: int = 600,
                 lora_r: int = 0, dtype: str = "auto", seed: int = 0):
    """Return ``(model, tokenizer)`` for ``spec``: a tiny size name, a local path or a hub id
    (``gpt2``, ``org/name``). ``lora_r > 0`` wraps the model in LoRA adapters, tiny ones included."""
    if lora_r < 0:
        raise UserError(f"--lora-r must be 0 (train all weights) or a positive rank, got {lora_r}")
    if is_tiny(spec):
        if texts is None:
            raise UserError(f"student '{spec}' needs training text to build its tokenizer")
        model, tok = build_tiny_student(spec, texts, vocab_size=vocab_size, seed=seed)
    else:
        if not Path(spec).exists() and not is_hub_id(spec):
            raise UserError(f"student '{spec}' is neither a tiny size ({', '.join(TINY_SIZES)}), "
                            "a local folder, nor a hub id like 'gpt2' or 'Qwen/Qwen2.5-0.5B'")
        tok = load_tokenizer(spec)
        model = _load_model(spec, "student", dtype)
        _match_special_ids(model, tok)
    if lora_r > 0:
        model = apply_lora(model, lora_r)
    return model, tok


def load_frozen(ref: str, what: str = "model"):
    """``(model, tokenizer)`` of a trained causal LM (a run folder, a local path or a hub id) to use
    frozen: eval mode, no gradients. Teachers (KD) and SoftCoT/SemCoT's frozen models load this way;
    ``what`` names the role in the one-line error a bad path gives."""
    tokenizer = load_tokenizer(ref, what)
    model = _load_model(ref, what)
    _match_special_ids(model, tokenizer)
    model.eval().requires_grad_(False)
    return model, tokenizer
