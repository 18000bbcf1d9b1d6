"""Token-level distillation: a mini teacher trained briefly on coin flips teaches micro students
that share its tokenizer, online (teacher in memory) and offline (stored top-k logits)."""

from __future__ import annotations

import json

import pytest

from reasondistill.options import build
import torch
from helpers import logged_losses
from transformers import AutoModelForCausalLM

from reasondistill.api import student_texts
from reasondistill.cli import main
from reasondistill.errors import UserError
from reasondistill.io import atomic_write_jsonl
from reasondistill.kd import (
    KD_LOSSES,
    Distiller,
    KDConfig,
    TAIDSchedule,
    divergence,
    logits_path,
    tiny_student_with_tokenizer,
)
from reasondistill.loss import token_losses
from reasondistill.methods import ANSWER, RATIONALE, get_method
from reasondistill.models import build_tiny_student, load_tokenizer
from reasondistill.tasks import generate
from reasondistill.training import TrainConfig, TrainingModule, build_features, collate, count_targets, train
from reasondistill.training.teacher_logits import save_teacher_logits

KD_TRAIN = {"max_steps": 30, "batch_size": 8, "lr": 1e-2, "log_every": 5, "checkpoint_every": 0}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A mini LLaMA trained 100 steps with post_thinking, saved as a folder; the examples it saw."""
    examples = generate("coin_flip", 32, seed=0)
    model, tok = build_tiny_student("mini", student_texts(examples), vocab_size=320, seed=0)
    root = tmp_path_factory.mktemp("teacher")
    train(get_method("post_thinking"), model, tok, examples, root / "run",
          TrainConfig(**{**KD_TRAIN, "max_steps": 100}), tiny=True, progress=False)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    return str(root / "model"), load_tokenizer(str(root / "model")), examples


def batch_of(method, examples, tok):
    features = build_features(method, examples, tok, 512)
    return collate(features, tok.pad_token_id)


def distiller(tok, **options):
    return Distiller(KDConfig.from_options(options), tok)


def kd_of(method, model, batch, kd):
    """The KD part of one training forward, through the trainer's own objective (one micro-batch)."""
    module = TrainingModule(model, method, kd)
    module.train()
    return {k: v.detach() for k, v in module(batch, count_targets(method, [batch])).items()}


@pytest.mark.parametrize("kind,method_name", [("forward_kl", "pre_thinking"), ("reverse_kl", "post_thinking"),
                                              ("jsd", "pst"), ("taid", "post_thinking")])
def test_each_kd_loss_trains_with_falling_loss(teacher, tmp_path, kind, method_name):
    path, tok, examples = teacher
    student = tiny_student_with_tokenizer("micro", tok, seed=1)
    extra = {"encoder": "student"} if method_name == "pst" else {}
    method = get_method(method_name, **extra)
    train(method, student, tok, examples, tmp_path, TrainConfig(**KD_TRAIN, teacher_model=path, kd_loss=kind),
          tiny=True, progress=False)
    losses, kd = logged_losses(tmp_path), logged_losses(tmp_path, "kd")
    assert len(kd) == len(losses) == 6
    assert losses[-1] < 0.5 * losses[0], losses
    assert kd[-1] < 0.6 * kd[0], kd
    if kind == "taid":  # the target moves from near the student towards the teacher
        t = logged_losses(tmp_path, "taid_t")
        assert t[0] < 0.5 and t[-1] > 0.9 and t == sorted(t), t


def test_kd_term_is_zero_when_the_student_is_the_teacher(teacher):
    path, tok, examples = teacher
    same = AutoModelForCausalLM.from_pretrained(path)
    other = tiny_student_with_tokenizer("micro", tok, seed=1)
    method = get_method("post_thinking")
    batch = batch_of(method, examples[:8], tok)
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        kd = distiller(tok, teacher_model=path, kd_loss=kind, kd_temperature=2.0)
        assert abs(float(kd_of(method, same, batch, kd)["kd"])) < 1e-5, kind
        assert float(kd_of(method, other, batch, kd)["kd"]) > 0.05, kind


def test_taid_objective_is_the_cross_entropy_against_the_interpolated_target(teacher):
    """TAID's official objective (and the value its adaptive t follows) is CE(target, student):
    KL(target ‖ student) plus the target's entropy, not the KL alone."""
    path, tok, examples = teacher
    student = tiny_student_with_tokenizer("micro", tok, seed=1)
    method = get_method("post_thinking", rationale_weight=1.0)
    batch = batch_of(method, examples[:8], tok)
    kd = distiller(tok, teacher_model=path, kd_loss="taid")
    assert kd.taid.t == pytest.approx(0.4)
    value = float(kd_of(method, student, batch, kd)["kd"])
    mask = batch["spans"][:, 1:] != 0
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][mask]
        t = kd.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][mask]
        target = (0.6 * s.log_softmax(-1) + 0.4 * t.log_softmax(-1)).log_softmax(-1)
        kl = (target.exp() * (target - s.log_softmax(-1))).sum(-1)
        entropy = -(target.exp() * target).sum(-1)
    spans = batch["spans"][:, 1:][mask]
    expect = sum(float((kl + entropy)[spans == c].mean()) for c in (ANSWER, RATIONALE))
    assert value == pytest.approx(expect, rel=1e-4)
    assert value > sum(float(kl[spans == c].mean()) for c in (ANSWER, RATIONALE)) + 0.1
    kd.end_step(value, 1, 100)  # the schedule consumes the step's objective
    assert kd.taid.previous == pytest.approx(value)


def test_kd_follows_the_methods_span_weights(teacher):
    """PT with rationale_weight 0: the KD term covers the answer tokens only."""
    path, tok, examples = teacher
    student = tiny_student_with_tokenizer("micro", tok, seed=1)
    method = get_method("post_thinking", rationale_weight=0.0)
    teacher_kd = distiller(tok, teacher_model=path)
    batch = batch_of(method, examples[:8], tok)
    kd = float(kd_of(method, student, batch, teacher_kd)["kd"])
    answer = batch["spans"][:, 1:] == ANSWER
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][answer]
        t = teacher_kd.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][answer]
    assert kd == pytest.approx(float(divergence(s, t, "forward_kl").mean()), rel=1e-5)


def test_kd_alone_teaches_the_task(teacher):
    """Only the KD gradient (no cross-entropy): the student's CE on the teacher's data still falls."""
    path, tok, examples = teacher
    student = tiny_student_with_tokenizer("micro", tok, seed=1)
    method = get_method("post_thinking")
    kd = distiller(tok, teacher_model=path)
    batch = batch_of(method, examples[:16], tok)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    positions = method.targets(batch).positions()
    ce = []
    for _ in range(20):
        out = method.loss(student, batch)
        token_ce, token_kd = token_losses(out.head, out.hidden, positions, batch["input_ids"],
                                          extra=kd.chunk_term(batch, positions))
        ce.append(float(token_ce.detach().mean()))
        opt.zero_grad()
        token_kd.mean().backward()
        opt.step()
    assert ce[-1] < 0.5 * ce[0], ce


def test_offline_logits_at_full_vocab_match_online(teacher, tmp_path):
    path, tok, examples = teacher
    vocab = len(tok)
    stats = save_teacher_logits(path, None, tmp_path / "full.safetensors", k=vocab, examples=examples,
                                progress=False)
    assert stats["k"] == vocab and stats["sequences"] == 2 * len(examples)  # pre and post layouts
    assert stats["array_bytes_per_token"] == 4 * vocab  # fp16 value + uint16 id per entry
    student = tiny_student_with_tokenizer("micro", tok, seed=1)
    for name in ("pre_thinking", "post_thinking"):
        for kind in KD_LOSSES:
            method = get_method(name)
            online = distiller(tok, teacher_model=path, kd_loss=kind, kd_temperature=1.5)
            offline = distiller(tok, teacher_logits=str(tmp_path / "full.safetensors"), kd_loss=kind,
                                kd_temperature=1.5)
            batch = batch_of(method, examples[:8], tok)
            a = float(kd_of(method, student, batch, online)["kd"])
            b = float(kd_of(method, student, batch, offline)["kd"])
            assert b == pytest.approx(a, rel=1e-4), (name, kind, a, b)  # fp16 storage


def test_top_k_logits_store_k_entries_per_token(teacher, tmp_path):
    path, tok, examples = teacher
    stats = save_teacher_logits(path, None, tmp_path / "k8.safetensors", k=8, method="post_thinking",
                                examples=examples, progress=False)
    assert stats["sequences"] == len(examples) and stats["array_bytes_per_token"] == 32
    assert 32 <= stats["bytes_per_token"] < 40  # arrays plus the index and metadata
    student = tiny_student_with_tokenizer("micro", tok, seed=1)
    method = get_method("post_thinking")
    kd = distiller(tok, teacher_logits=str(tmp_path / "k8.safetensors"))
    assert 0 < float(kd_of(method, student, batch_of(method, examples[:8], tok), kd)["kd"]) < 50
    # a layout that was not stored gives a clear error, not a silent mismatch
    pre = get_method("pre_thinking")
    with pytest.raises(UserError, match="no stored teacher logits"):
        kd_of(pre, student, batch_of(pre, examples[:8], tok), kd)


def test_tokenizer_mismatch_is_a_one_line_error(teacher, tmp_path, capsys):
    path, _, examples = teacher
    student, other_tok = build_tiny_student("micro", student_texts(examples), vocab_size=200, seed=0)
    with pytest.raises(UserError, match="tokenizers differ at token id"):
        distiller(other_tok, teacher_model=path)
    student.save_pretrained(tmp_path / "student")
    other_tok.save_pretrained(tmp_path / "student")
    data = tmp_path / "train.jsonl"
    atomic_write_jsonl(data, [ex.to_dict() for ex in examples])
    code = main(["train", "--method", "post_thinking", "--data", str(data), "--student", str(tmp_path / "student"),
                 "--teacher-model", path, "--max-steps", "1", "--out", str(tmp_path / "run")])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert code == 2 and len(errors) == 1 and "differ at token id" in errors[0], errors
    assert errors[0].startswith("reasondistill: error: student and teacher")


def test_kd_options_are_checked():
    with pytest.raises(UserError, match="kd_loss.*forward_kl"):  # the train option, checked like every other
        build(TrainConfig, [("keyword:train", {"teacher_model": "x", "kd_loss": "mse"})])
    with pytest.raises(UserError, match="kd_loss must be one of"):
        KDConfig.from_options({"teacher_model": "x", "kd_loss": "mse"})
    with pytest.raises(UserError, match="needs a teacher"):
        TrainConfig(kd_loss="taid").kd()
    with pytest.raises(UserError, match="kd_temperature"):
        KDConfig.from_options({"teacher_model": "x", "kd_temperature": 0})
    with pytest.raises(UserError, match="does not support token-level KD"):  # soft thoughts: no token layout
        train(get_method("softcot", stage="main"), None, None, generate("coin_flip", 2, seed=0), "unused",
              TrainConfig(teacher_model="x"))


def test_cli_trains_with_stored_logits_beside_the_data(teacher, tmp_path):
    """`train --teacher-model` on a rationale file whose logits were saved beside it: a tiny student
    takes the teacher's tokenizer, the stored logits replace the teacher, the run records both."""
    path, tok, examples = teacher
    data = tmp_path / "rationales.jsonl"
    atomic_write_jsonl(data, [ex.to_dict() for ex in examples])
    save_teacher_logits(path, data, logits_path(data), k=16, progress=False)
    out = tmp_path / "run"
    code = main(["train", "--method", "post_thinking", "--data", str(data), "--student", "micro",
                 "--teacher-model", path, "--kd-loss", "jsd", "--kd-weight", "0.5", "--max-steps", "4",
                 "--batch-size", "8", "--checkpoint-every", "0", "--out", str(out)])
    assert code == 0
    record = json.loads((out / "reasondistill.json").read_text())
    opts = record["kd"]
    assert "teacher_model" not in record["method_options"]  # KD is the trainer's, not the method's
    assert opts["teacher_model"] == path and opts["kd_loss"] == "jsd" and opts["kd_weight"] == 0.5
    assert opts["teacher_logits"] == str(logits_path(data))
    assert load_tokenizer(str(out)).get_vocab() == tok.get_vocab()
    assert AutoModelForCausalLM.from_pretrained(out).config.hidden_size == 32  # the student, not the teacher
    assert "kd" in json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


def test_taid_schedule_rises_with_the_ramp_and_faster_while_learning():
    ramp, fast = TAIDSchedule(), TAIDSchedule(alpha=0.2)
    for step in range(1, 11):
        for schedule in (ramp, fast):
            schedule.record(10.0 / step)  # a falling objective
            schedule.step(step, 100)
    assert ramp.t == pytest.approx(0.4 + 0.6 * 10 / 100)
    assert fast.t > ramp.t + 0.2
    ramp.step(100, 100)  # no new value recorded: t stays
    ramp.record(1.0)
    ramp.step(100, 100)
    assert ramp.t == 1.0


def test_kd_covers_exactly_kpods_progressive_targets_with_its_weights(teacher):
    """kpod at k=1 trains the last rationale step and the answer, keypoint-weighted: the KD term
    is the same weighted mean over those tokens, not over every non-prompt token."""
    path, tok, examples = teacher
    student = tiny_student_with_tokenizer("micro", tok, seed=1)
    method = get_method("kpod", mask_steps=20, answer_model_steps=20, start_steps=1)
    method.prepare(examples[:8], tok, student)
    batch = batch_of(method, examples[:8], tok)
    kd = distiller(tok, teacher_model=path)
    value = float(kd_of(method, student, batch, kd)["kd"])
    learnt, _ = method.learnt(batch)
    every = batch["spans"][:, 1:] != 0
    assert learnt.sum() < 0.8 * every.sum()  # steps given as input are not learnt
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        t = kd.teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    d = divergence(s[every], t[every], "forward_kl")
    w = (batch["weights"][:, 1:] * learnt)[every]
    assert value == pytest.approx(float((w * d).sum() / w.sum()), rel=1e-5)
    assert value != pytest.approx(float(d.mean()), rel=1e-3)
