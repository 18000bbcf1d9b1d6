"""Train a small byte-level BPE tokenizer on a task's own text.

On CPU the output layer (hidden × vocab) dominates a tiny student's cost, so a vocabulary of a few
hundred tokens learnt from the task keeps training fast while still covering any input (byte-level:
no unknown tokens).

``split`` decides what BPE may merge. With ``"bpe"`` (the default) whole words and numbers become
single tokens, so a tiny student must memorise, token by token, facts such as "the last letter of
'apple' is e" or "7 + 5 = 12". ``"digits"`` keeps every digit its own token (numbers are spelt
digit by digit, as in most LLM tokenizers, so sums are written the same way whatever the
numbers); ``"chars"`` keeps every letter and digit its own token as well, so the last letter of a
word is a token the student can copy. The price is longer sequences.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..errors import UserError

PAD, EOS, BOS = "<|pad|>", "<|eos|>", "<|bos|>"
SPLITS = ("bpe", "digits", "chars")


def _pre_tokenizer(split: str):
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if split == "bpe":
        return byte_level
    if split == "digits":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if split == "chars":  # every letter and digit alone; spaces and punctuation stay their own pieces
        return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"[\p{L}\p{N}]"), "isolated"), byte_level])
    raise UserError(f"unknown tokenizer split '{split}'; valid: {', '.join(SPLITS)}")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 600, split: str = "bpe") -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of at most ``vocab_size`` tokens, wrapped for transformers;
    ``split`` ("bpe", "digits", "chars") limits what may merge (see the module docstring)."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = _pre_tokenizer(split)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS, BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, bos_token=BOS)
    tok.padding_side = "left"
    return tok
