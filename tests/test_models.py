"""Students: tiny configs, tokenizers learnt from the task, local HF folders, LoRA."""

from __future__ import annotations

import json
import socket

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
        load_student("not a model!")


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


def test_lora_on_a_tiny_student_trains_adapters_only(tmp_path):
    examples, _, _ = micro_setup(n=8)
    from reasondistill.api import student_texts
    model, _ = load_student("micro", student_texts(examples), vocab_size=320, lora_r=2)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters()) / 4  # adapters, not every weight
    out = tmp_path / "lora-tiny"
    api.train("answer_only", "synthetic/coin_flip", out, student="micro", vocab_size=320, lora_r=2, n=16,
              training={"max_steps": 2, "batch_size": 8, "checkpoint_every": 0}, progress=False)
    assert not any("lora" in k for k in AutoModelForCausalLM.from_pretrained(out).state_dict())  # merged
    with pytest.raises(UserError, match="--lora-r"):
        load_student("micro", ["x"], lora_r=-1)


@pytest.fixture
def unreachable_hub(monkeypatch):
    """No hub: the endpoint is a closed local port and offline mode is not set, as on a laptop
    without network (the case that used to retry for a minute)."""
    from reasondistill.hub import hub_reachable
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    import datasets.config
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read once, at import
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    hub_reachable.cache_clear()
    assert not hub_reachable()  # the one probe
    attempts = []  # every later connection attempt: failing fast means making none (no retries)

    def connect(sock, address):
        attempts.append(address)
        raise ConnectionRefusedError(111, "refused")
    def resolve(host, *args, **kwargs):
        attempts.append(host)
        raise socket.gaierror(-2, "Name or service not known")
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    yield attempts
    hub_reachable.cache_clear()


def test_hub_ids_are_accepted_and_fail_fast_offline(unreachable_hub):
    from reasondistill.hub import is_hub_id
    assert is_hub_id("gpt2") and is_hub_id("Qwen/Qwen2.5-0.5B") and not is_hub_id("a/b/c")
    with pytest.raises(UserError, match=r"'nobody-here/no-such-model' is not in the local Hugging Face cache.*"
                                        r"hf download nobody-here/no-such-model --local-dir DIR"):
        load_student("nobody-here/no-such-model")
    with pytest.raises(UserError, match="student 'no-such-gpt' is not in the local"):  # no namespace: still a hub id
        load_student("no-such-gpt")
    assert unreachable_hub == []


def test_hub_dataset_fails_fast_offline(unreachable_hub):
    from reasondistill.tasks import load_task
    with pytest.raises(UserError, match=r"dataset 'tau/commonsense_qa' is not in the local Hugging Face cache"
                                        r".*--repo-type dataset"):
        load_task("hf:commonsense_qa", "validation")
    assert unreachable_hub == []


def test_offline_student_is_one_line_on_the_cli(tmp_path):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    done = subprocess.run([sys.executable, "-m", "reasondistill", "train", "--method", "answer_only", "--data",
                           "synthetic/coin_flip", "--student", "nobody-here/no-such-model", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--local-dir" in done.stderr
