"""Random-weight students of the architectures users bring, each with a tokenizer built with
``tokenizers`` that follows its family's conventions (which special tokens exist, whether BOS is
added, a chat template with or without think tags, or none), saved with ``save_pretrained``.

Micro sizes (hidden 32, one layer, ~300-token vocabulary) so a training step takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, GemmaConfig, GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig,
                          Phi3Config, PretrainedConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen3Config)

from reasondistill.api import student_texts
from reasondistill.tasks import generate

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QWEN3 = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['role'] == 'assistant' and "
         "m.get('reasoning_content') %}<think>\n{{ m['reasoning_content'] }}\n</think>\n\n{% endif %}"
         "{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
          "{{ m['content'] }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
MISTRAL = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
           "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
GEMMA = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
         "else m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
         "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
PHI3 = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


@dataclass
class Family:
    """One architecture and its tokenizer conventions."""

    name: str
    config: type[PretrainedConfig]
    bos: str | None
    eos: str | None
    pad: str | None = None
    add_bos: bool = False               # the tokenizer puts BOS in front of text by default
    template: str | None = None
    extra_special: list[str] = field(default_factory=list)
    think: bool = False                 # <think>/</think> in the vocabulary
    wordpiece: bool = False             # BERT-style: lower case, whitespace (newlines) dropped
    config_kwargs: dict = field(default_factory=dict)


SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
         "num_key_value_heads": 1, "max_position_embeddings": 512}
FAMILIES = {f.name: f for f in [
    Family("llama", LlamaConfig, "<|begin_of_text|>", "<|end_of_text|>", add_bos=True, template=LLAMA3,
           extra_special=["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], config_kwargs=SMALL),
    Family("qwen2", Qwen2Config, None, "<|im_end|>", pad="<|endoftext|>", template=CHATML,
           extra_special=["<|im_start|>"], config_kwargs=SMALL),
    Family("qwen3", Qwen3Config, None, "<|im_end|>", pad="<|endoftext|>", template=QWEN3, think=True,
           extra_special=["<|im_start|>"], config_kwargs={**SMALL, "head_dim": 16}),
    Family("mistral", MistralConfig, "<s>", "</s>", add_bos=True, template=MISTRAL, config_kwargs=SMALL),
    Family("gemma", GemmaConfig, "<bos>", "<eos>", pad="<pad>", add_bos=True, template=GEMMA,
           extra_special=["<start_of_turn>", "<end_of_turn>"], config_kwargs={**SMALL, "head_dim": 16}),
    Family("phi3", Phi3Config, "<s>", "<|endoftext|>", template=PHI3,
           extra_special=["<|user|>", "<|assistant|>", "<|end|>"],
           config_kwargs={**SMALL, "num_key_value_heads": 2, "pad_token_id": None}),
    Family("gpt2", GPT2Config, "<|endoftext|>", "<|endoftext|>",
           config_kwargs={"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 512}),
    Family("gpt_neox", GPTNeoXConfig, "<|endoftext|>", "<|endoftext|>", think=True,
           config_kwargs={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                          "num_attention_heads": 2, "max_position_embeddings": 512}),
]}
# Convention cases beside the families: a BERT-style tokenizer on a LLaMA (no newline token; with
# and without an eos).
BERT_LIKE = Family("llama_wordpiece", LlamaConfig, "[CLS]", "[SEP]", pad="[PAD]", wordpiece=True, config_kwargs=SMALL)
BERT_NO_EOS = Family("llama_wordpiece_no_eos", LlamaConfig, "[CLS]", None, pad="[PAD]", wordpiece=True,
                     extra_special=["[SEP]"], config_kwargs=SMALL)


def family_texts(n: int = 64) -> list[str]:
    return student_texts(generate("coin_flip", n, seed=0))


def build_tokenizer(family: Family, texts: list[str], vocab_size: int = 300) -> PreTrainedTokenizerFast:
    specials = list(dict.fromkeys(t for t in (family.bos, family.eos, family.pad, *family.extra_special) if t))
    if family.wordpiece:
        core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        core.normalizer = normalizers.BertNormalizer(lowercase=True)
        core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        core.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[UNK]", *specials],
                                            show_progress=False)
    else:
        core = Tokenizer(models.BPE())
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(texts, trainer=trainer)
    if family.add_bos:
        core.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A $B",
            special_tokens=[(family.bos, core.token_to_id(family.bos))])
    elif family.wordpiece:
        cls, sep = core.token_to_id("[CLS]"), core.token_to_id("[SEP]")
        core.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token=family.bos, eos_token=family.eos,
                                  pad_token=family.pad, unk_token="[UNK]" if family.wordpiece else None,
                                  additional_special_tokens=family.extra_special or None)
    if family.wordpiece:
        tok.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]  # BERT's, as shipped
    if family.think:
        tok.add_tokens(["<think>", "</think>"])  # ordinary added tokens, as in Qwen3
    if family.template:
        tok.chat_template = family.template
    return tok


def build_student(family: Family, folder: Path, texts: list[str] | None = None) -> Path:
    """Save a random-weight model and its tokenizer into ``folder``; returns it."""
    import torch
    tok = build_tokenizer(family, texts or family_texts())
    ids = {k: tok.convert_tokens_to_ids(t) if t else None
           for k, t in (("bos_token_id", family.bos), ("eos_token_id", family.eos), ("pad_token_id", family.pad))}
    kwargs = {**ids, **family.config_kwargs}
    if family.config is GPT2Config:
        kwargs.pop("pad_token_id")
    config = family.config(vocab_size=len(tok), tie_word_embeddings=True, **kwargs)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
