"""Token-level KD compares two distributions id by id: student and teacher must share a tokenizer."""

from __future__ import annotations

from ..errors import UserError

PROBE = "Question: 12 apples + 7 pears? Answer: yes\nRationale: The coin was flipped, so it's tails."


def vocab_list(tokenizer) -> list[str | None]:
    """Token text by id (None for unused ids): what two tokenizers must share for token-level KD."""
    vocab = tokenizer.get_vocab()
    out: list[str | None] = [None] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        out[i] = token
    return out


def probe_ids(tokenizer) -> list[int]:
    return tokenizer(PROBE, add_special_tokens=False).input_ids


def check_same_tokenizer(student_tokenizer, teacher_vocab: list[str | None], teacher: str,
                         teacher_probe: list[int] | None = None) -> None:
    """Raise a one-line UserError naming the first token id where the vocabularies differ, or, when
    they agree, where the two tokenisations of a probe sentence part ways."""
    student_vocab = vocab_list(student_tokenizer)
    for i in range(max(len(student_vocab), len(teacher_vocab))):
        s = student_vocab[i] if i < len(student_vocab) else None
        t = teacher_vocab[i] if i < len(teacher_vocab) else None
        if s != t:
            raise UserError(
                f"student and teacher '{teacher}' tokenizers differ at token id {i}: student {s!r}, teacher "
                f"{t!r} ({len(student_vocab)} vs {len(teacher_vocab)} ids); token-level KD needs a shared "
                "vocabulary: use a student of the teacher's family (a tiny student built with the teacher's "
                "tokenizer works)")
    if teacher_probe is not None:
        mine = probe_ids(student_tokenizer)
        if mine != teacher_probe:
            i = next((j for j, (a, b) in enumerate(zip(mine, teacher_probe)) if a != b), min(len(mine), len(teacher_probe)))
            raise UserError(f"student and teacher '{teacher}' share a vocabulary but tokenise differently "
                            f"(token {i} of {PROBE!r}); token-level KD needs the same tokenizer")
