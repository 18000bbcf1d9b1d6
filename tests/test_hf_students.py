"""Every Hugging Face student: chat templates, think tags, tokenizer conventions, and the
architecture matrix (train, evaluate, save, reload with plain transformers, serve, LoRA)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from transformers import AutoModelForCausalLM

from reasondistill import api
from reasondistill.errors import UserError
from reasondistill.layout import THINK_OPEN, resolve_layout
from reasondistill.methods import CORE_METHODS, METHODS, PROMPT, format_question, get_method
from reasondistill.generation import Row, decode
from reasondistill.models import load_student, load_tokenizer, prepare_tokenizer
from reasondistill.serving import create_app
from reasondistill.tasks import generate as generate_task

from families import BERT_LIKE, BERT_NO_EOS, FAMILIES, build_student, build_tokenizer, family_texts

CHAT = [name for name, f in FAMILIES.items() if f.template]
STEPS = {"max_steps": 2, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 0, "log_every": 1}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root, texts = tmp_path_factory.mktemp("families"), family_texts()
    return {name: build_student(f, root / name, texts) for name, f in [*FAMILIES.items(), (BERT_LIKE.name, BERT_LIKE)]}


@pytest.fixture(scope="module")
def example():
    return generate_task("coin_flip", 1, seed=3)[0]


def _chat_ids(tok, user: str) -> list[int]:
    out = tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if not isinstance(out, list) else out)


def _method(name: str, tok):
    method = get_method(name, **({"encoder": "student"} if name == "pst" else {}))
    method.use_layout(resolve_layout(tok, "auto", supported=method.chat_layout, method=name))
    return method


# ----- 1. the prompt a method trains on is the prompt the student is asked with ------------------

@pytest.mark.parametrize("family", CHAT)
def test_every_method_trains_on_exactly_the_inference_chat_prompt(folders, example, family):
    _, tok = load_student(str(folders[family]))
    for name, cls in METHODS.items():
        if not cls.chat_layout:  # soft-thought and kpod prompts are their own: plain text, said so in the record
            assert not _method(name, tok).layout.chat
            continue
        method = _method(name, tok)
        method.index = {example.rationale.strip(): 0}  # pst's target lookup, normally built by prepare()
        features = method.features(example, tok)
        users = {"prefix": ["[answer] ", "[rationale] "]}.get(name, [""] * len(features))
        for feature, task_prefix in zip(features, users):
            prompt = [t for t, s in zip(feature.input_ids, feature.spans) if s == PROMPT]
            assert prompt == _chat_ids(tok, task_prefix + format_question(example).strip()), (family, name)
            assert feature.input_ids[-1] == method.layout.end_id(tok)  # the template's end of turn ends the target
        # what answer() and serve tokenise at inference (adaptive asks through its answer-first mode)
        asker = getattr(method, "fast", method)
        assert tok(asker.prompt(example), add_special_tokens=False).input_ids == \
            [t for t, s in zip(features[0].input_ids, features[0].spans) if s == PROMPT], (family, name)


def test_end_of_turn_replaces_eos_and_bos_is_never_doubled(folders, example):
    _, tok = load_student(str(folders["llama"]))
    chat = _method("answer_only", tok)
    [feature] = chat.features(example, tok)
    assert feature.input_ids[-1] == tok.convert_tokens_to_ids("<|eot_id|>") != tok.eos_token_id
    assert feature.input_ids.count(tok.bos_token_id) == 1  # the template writes it; nothing adds another
    plain = get_method("answer_only")
    plain.use_layout(resolve_layout(tok, "none"))
    [feature] = plain.features(example, tok)
    assert not plain.layout.chat and feature.input_ids[0] == tok.bos_token_id
    assert feature.input_ids.count(tok.bos_token_id) == 1 and feature.input_ids[-1] == tok.eos_token_id
    assert plain.prompt(example).startswith("<|begin_of_text|>Question:")
    _, gpt2 = load_student(str(folders["gpt2"]))  # adds no BOS: none is written
    assert _method("answer_only", gpt2).prompt(example).startswith("Question:")


def test_chat_template_file_and_none(folders, example, tmp_path):
    _, tok = load_student(str(folders["gpt2"]))
    assert not _method("post_thinking", tok).layout.chat
    template = tmp_path / "chatml.jinja"
    template.write_text(FAMILIES["qwen2"].template.replace("<|im_start|>", "### ").replace("<|im_end|>", ""))
    layout = resolve_layout(tok, str(template))
    assert layout.chat and layout.prompt(format_question(example), "Answer:").startswith("### user\nQuestion:")
    with pytest.raises(UserError, match="chat-template"):
        resolve_layout(tok, str(tmp_path / "missing.jinja"))
    with pytest.raises(UserError, match="writes its own prompt layout"):
        resolve_layout(tok, str(template), supported=False, method="softcot")


# ----- 2. think tags ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["qwen3", "gpt_neox"])
def test_rationale_goes_in_a_think_block(folders, example, family):
    _, tok = load_student(str(folders[family]))
    a, r = example.answer, example.rationale.strip()
    end = tok.decode([_method("answer_only", tok).layout.end_id(tok)])
    pre, post = _method("pre_thinking", tok), _method("post_thinking", tok)
    assert pre.layout.think and post.layout.think
    target = {m.name: tok.decode([t for t, s in zip(f.input_ids, f.spans) if s != PROMPT])
              for m in (pre, post) for f in m.features(example, tok)}
    space = "" if pre.layout.chat else " "
    assert target["pre_thinking"] == f"<think>\n{r}\n</think>\n\n{a}{end}"
    assert target["post_thinking"] == f"{space}{a}\n<think>\n{r}\n</think>{end}"
    assert pre.parse(f"<think>\n{r}\n</think>\n\n{a}", example) == (a, r)
    assert pre.parse(f"<think>\n{r}", example)[0] is None  # never closed: no answer
    assert post.layout.rationale_text(f"<think>\n{r}\n</think>") == r
    assert tok.convert_tokens_to_ids(THINK_OPEN) in post.layout.answer_stops(tok)[0]


def test_plain_students_keep_todays_markers(folders, example):
    _, tok = load_student(str(folders["gpt2"]))
    [feature] = _method("post_thinking", tok).features(example, tok)
    assert tok.decode(feature.input_ids).endswith(f"Answer: {example.answer}\nRationale: {example.rationale.strip()}"
                                                  "<|endoftext|>")


# ----- 3. tokenizer conventions ------------------------------------------------------------------

def test_tokenizer_conventions(folders, tmp_path):
    _, gpt2 = load_student(str(folders["gpt2"]))  # shipped without a pad token
    assert gpt2.pad_token_id == gpt2.eos_token_id and gpt2.padding_side == "left"
    bert = build_tokenizer(BERT_LIKE, family_texts(8))
    assert "token_type_ids" in bert("a coin")  # as BERT's tokenizers ship
    assert "token_type_ids" not in prepare_tokenizer(bert, "bert")("a coin")  # causal LMs' generate() refuses them
    assert "token_type_ids" not in load_tokenizer(str(folders[BERT_LIKE.name]))("a coin")
    with pytest.raises(UserError, match="no eos token.*tok.eos_token"):
        load_student(str(build_student(BERT_NO_EOS, tmp_path / "no-eos")))


def test_newline_free_tokenizer_still_stops_after_the_answer(folders, tmp_path):
    """A WordPiece tokenizer cannot write "\\n": the answer line ends at the rationale marker found in
    the decoded text, instead of running to max_new_tokens."""
    out = tmp_path / "pt"
    api.train("post_thinking", "synthetic/coin_flip", out, student=str(folders[BERT_LIKE.name]), n=48,
              training={**STEPS, "max_steps": 60, "lr": 2e-2}, progress=False)
    method, model, tok, record = api.load_run(out)
    ids, strings = method.layout.answer_stops(tok)
    assert not ids and strings == ["rationale"]
    examples = generate_task("coin_flip", 8, seed=5)
    preds = method.answer(model, tok, examples, max_new_tokens=64, explain=False)
    early = [p for p in preds if p.tokens_to_answer < 16]
    assert len(early) >= 6 and all(p.answer in ("yes", "no") for p in early)
    [row] = decode(model, tok, [Row(method.encode_prompt(examples[0], tok), 64)])
    assert len(row.generated) == 64  # without the stop string it runs on


# ----- 4. the matrix -----------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(FAMILIES))
def test_architecture_matrix(folders, tmp_path, family):
    student = str(folders[family])
    for name in CORE_METHODS:
        out = tmp_path / name
        options = {"encoder": "student"} if name == "pst" else {}
        record = api.train(name, "synthetic/coin_flip", out, student=student, n=16, training=STEPS,
                           method_options=options, progress=False)
        assert record["train"]["steps"] == 2 and record["layout"]["chat"] == bool(FAMILIES[family].template)
        metrics = api.evaluate(out, "synthetic/coin_flip", n=2, max_new_tokens=12, similarity=False,
                               progress=False)
        assert metrics["n"] == 2 and 0.0 <= metrics["accuracy"] <= 1.0
        AutoModelForCausalLM.from_pretrained(out)  # plain transformers loads what was saved
    app = create_app(tmp_path / "post_thinking")
    assert app.state.student.method.layout.chat == bool(FAMILIES[family].template)  # serve renders as training did
    with TestClient(app) as client:
        reply = client.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "A coin is heads up. Tom flips the coin. Is it heads up?"}],
            "max_tokens": 8})
    assert reply.status_code == 200, reply.text
    assert isinstance(reply.json()["choices"][0]["message"]["content"], str)
    lora = api.train("answer_only", "synthetic/coin_flip", tmp_path / "lora", student=student, lora_r=2, n=16,
                     training=STEPS, progress=False)
    assert lora["train"]["steps"] == 2
    assert json.loads((tmp_path / "lora" / "train_call.json").read_text())["lora_r"] == 2
    AutoModelForCausalLM.from_pretrained(tmp_path / "lora")  # merged: no peft needed to load it
