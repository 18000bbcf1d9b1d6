"""Students: tiny configs, tokenizers learnt from the task, local HF folders, LoRA."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from reasondistill import api
from reasondistill.errors import UserError
from reasondistill.methods.base import newline_token_ids
from reasondistill.models import load_student, train_tokenizer

from helpers import micro_setup


def test_tokenizer_is_small_lossless_and_finds_newlines():
    texts = ["Question: Jeff flips the coin.\nAnswer: yes\nRationale: Jeff flips it, so it is tails up."] * 20
    tok = train_tokenizer(texts, vocab_size=300)
    assert len(tok) <= 300
    sample = "Question: Zoë flips a coin?\nAnswer: 12"  # unseen characters still round-trip (byte level)
    assert tok.decode(tok(sample).input_ids) == sample
    newline_ids = newline_token_ids(tok)
    assert newline_ids and all("\n" in tok.decode([i]) for i in newline_ids)
    assert tok(" yes").input_ids[0] not in newline_ids


def test_unknown_student_is_a_user_error():
    with pytest.raises(UserError, match="neither a tiny size"):
        load_student("not-a-model")


def test_local_hf_folder_with_lora_trains_and_saves_merged(tmp_path):
    _, model, tok = micro_setup(n=8)
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    out = tmp_path / "lora"
    record = api.train("post_thinking", "synthetic/coin_flip", out, student=str(base), lora_r=4, n=32,
                       training={"max_steps": 6, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0}, progress=False)
    assert record["train"]["steps"] == 6
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft needed
    before = AutoModelForCausalLM.from_pretrained(base)
    changed = [not torch.equal(a, b) for a, b in zip(before.state_dict().values(), merged.state_dict().values())]
    assert any(changed)  # the adapters were trained and merged into the saved weights
    assert json.loads((out / "reasondistill.json").read_text())["student"] == str(base)
