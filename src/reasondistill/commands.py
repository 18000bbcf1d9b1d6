"""The options of ``train``, ``eval`` and ``demo``: one typed definition each (see options.py).

Each field is a CLI flag, a YAML key of ``--config`` and a keyword of the Python API at once; its
default and help text live here only. ``TrainConfig`` is the part of ``train``'s options the
trainer reads (optimisation); ``TrainOptions`` adds what picks the data, the student and the run
folder. Method settings are the method's own (``methods show NAME``); the few every method shares
(Masked Thought, KD) have flags here that default to "the method's default".
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import field_validator

from .options import REQUIRED, MethodOptions, Options, opt


class TrainConfig(Options):
    """Optimisation settings the trainer reads. ``lr=None`` picks 1e-3 for tiny students and 5e-5
    otherwise."""

    command: ClassVar[str] = "train"

    max_steps: int = opt(300, "optimiser steps", ge=1)
    batch_size: int = opt(16, "sequences per micro-batch (per process)", ge=1)
    grad_accum: int = opt(1, "micro-batches per optimiser step (gradient accumulation)", ge=1)
    lr: float | None = opt(None, "peak learning rate (default 1e-3 for tiny students, 5e-5 otherwise)", gt=0)
    warmup_ratio: float = opt(0.05, "fraction of the steps spent warming the learning rate up", ge=0, lt=1)
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases and norms)", ge=0)
    max_length: int = opt(512, "longest training sequence in tokens (longer ones are cut at the end)", ge=1)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = opt("auto", "auto: bf16 on a GPU that has it, else fp32")
    checkpoint_every: int = opt(100, "save a resumable checkpoint every N steps (0: never)", ge=0)
    log_every: int = opt(10, "log the losses to metrics.jsonl every N steps", ge=1)
    seed: int = opt(0, "seed of the data order, the initialisation and the data itself")
    group_by_length: bool = opt(True, "batch sequences of similar length together (less padding)")
    gradient_checkpointing: bool = opt(False, "recompute activations in the backward pass: less memory, more time")
    loss_chunk_tokens: int = opt(256, "target tokens per LM-head chunk (bounds the logits held in memory)", ge=1)
    use_liger_kernel: Literal["auto", "true", "false"] = opt(
        "auto", "liger-kernel's fused linear cross-entropy for the token losses (pip install 'reasondistill[liger]'): "
        "auto uses it on CUDA where it applies (a plain linear head, no token-level KD), true insists "
        "(error without CUDA or liger), false never")
    packing: bool = opt(False, "pack several sequences into each one of up to max_length tokens (padding-free: "
                        "position ids restart per sequence, no attention across them); per-token methods only")
    # Token-level KD is the trainer's (every method accepts a teacher); the train flags of the same
    # names reach it through the method's options (MethodOptions), so they are not flags here.
    teacher_model: str | None = opt(None, "token-level KD from this open teacher", cli=False)
    teacher_logits: str | None = opt(None, "token-level KD from stored top-k teacher logits", cli=False)
    kd_loss: Literal["forward_kl", "reverse_kl", "jsd", "taid"] = opt("forward_kl", "divergence of the KD term",
                                                                      cli=False)
    kd_weight: float = opt(1.0, "weight of the KD term", ge=0, cli=False)
    kd_temperature: float = opt(1.0, "softmax temperature of the KD term", gt=0, cli=False)
    kd_beta: float = opt(0.5, "jsd: mixture weight of the teacher", gt=0, lt=1, cli=False)

    @field_validator("use_liger_kernel", mode="before")
    @classmethod
    def _bool_is_text(cls, value: Any) -> Any:
        """YAML's ``true``/``false`` and the API's ``True``/``False`` are the settings of those names."""
        return str(value).lower() if isinstance(value, bool) else value

    def kd(self):
        """The KD settings, checked (a teacher named, or none: KD off)."""
        from .kd import KDConfig
        return KDConfig.from_options({k: getattr(self, k) for k in KDConfig.keys()})


def _promoted(name: str) -> Any:
    """A method option every method shares, as a train flag: None means the method's default."""
    field = MethodOptions.model_fields.get(name) or TrainConfig.model_fields[name]
    limits = {k: getattr(m, k) for m in field.metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    return opt(None, field.description or "", **limits)


class TrainOptions(TrainConfig):
    """``reasondistill train`` / ``reasondistill.train``."""

    method: str = opt(REQUIRED, "answer_only, pre_thinking, prefix, post_thinking, pst, ... (methods list)")
    data: str = opt(REQUIRED, "built-in task (synthetic/coin_flip), hf:NAME or a JSON/JSONL path")
    out: str = opt(REQUIRED, "run folder to write")
    split: str = opt("train", "train, test or all (a file is split 80/20 with --split-seed)")
    n: int | None = opt(None, "use the first N examples", ge=1)
    hallucination: float = opt(0.0, "synthetic tasks: fraction of corrupted rationales", ge=0, le=1)
    format: str | None = opt(None, "gsm8k, teacher, jsonl, semcot, logic (default: detected)")
    keep: Literal["correct", "all"] = opt("correct", "correct: drop rationales whose teacher answer is wrong")
    test_fraction: float = opt(0.2, "a single file: fraction held out as the test split", gt=0, lt=1)
    split_seed: int | None = opt(None, "seed of the file's train/test split or synthetic data (default --seed)")
    max_example_chars: int = opt(100_000, "skip (and count) examples longer than this many characters", ge=1)
    student: str = opt("tiny", "tiny | micro | mini | small | HF id | local path")
    assistant: str | None = opt(None, "softcot/semcot: the assistant/generator model (run folder or HF id)")
    vocab_size: int = opt(600, "tiny students: tokenizer size", ge=16)
    lora_r: int = opt(0, "train LoRA adapters of this rank instead of all weights (0: full)", ge=0)
    chat_template: str = opt("auto", "auto: the student's own template when it has one; none: plain text; "
                             "or a Jinja template file")
    resume: bool = opt(False, "continue from the last checkpoint in --out (the call must match)")
    overwrite: bool = opt(False, "clear an existing --out first")
    method_options: dict[str, Any] = opt({}, "method option KEY=VALUE (repeatable; see `methods show NAME`)",
                                         flags=["--option"], action="key_value")
    mask_rationale: float | None = _promoted("mask_rationale")
    teacher_model: str | None = _promoted("teacher_model")
    teacher_logits: str | None = _promoted("teacher_logits")
    kd_loss: Literal["forward_kl", "reverse_kl", "jsd", "taid"] | None = _promoted("kd_loss")
    kd_weight: float | None = _promoted("kd_weight")
    kd_temperature: float | None = _promoted("kd_temperature")
    progress: bool = opt(True, "progress bars")

    PROMOTED: ClassVar[tuple[str, ...]] = ("assistant", "mask_rationale", "teacher_model", "teacher_logits",
                                           "kd_loss", "kd_weight", "kd_temperature")

    @field_validator("method_options", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    def all_method_options(self) -> dict[str, Any]:
        """``method_options`` with the promoted flags (``--mask-rationale``, ``--kd-loss``...) that were set."""
        out = dict(self.method_options)
        out.update({k: getattr(self, k) for k in self.PROMOTED if getattr(self, k) is not None})
        return out

    def training(self) -> TrainConfig:
        """The trainer's part of these options (the promoted KD flags reach it via the method's)."""
        return TrainConfig(**{k: v for k, v in self.subset(TrainConfig).items() if k not in self.PROMOTED})


class EvalOptions(Options):
    """``reasondistill eval`` / ``reasondistill.evaluate``."""

    command: ClassVar[str] = "eval"

    model: str | None = opt(None, "run folder written by train (with --server: optional, gives method and layout)")
    data: str = opt(REQUIRED, "built-in task, hf:NAME or a JSON/JSONL path")
    server: str | None = opt(None, "evaluate the student behind this OpenAI-compatible server (http://host:port)")
    served_model: str | None = opt(None, "with --server: the model id the server serves (default: its only one)")
    method: str | None = opt(None, "with --server and no --model: the student's method (our serve says it itself)")
    concurrency: int = opt(8, "with --server: requests in flight at once", ge=1)
    split: str = opt("test", "train, test or all")
    n: int | None = opt(None, "evaluate the first N examples", ge=1)
    seed: int = opt(0, "seed of a file's train/test split (the one training used)")
    test_fraction: float = opt(0.2, "a single file: fraction held out as the test split", gt=0, lt=1)
    format: str | None = opt(None, "gsm8k, teacher, jsonl, semcot, logic (default: detected)")
    out: str | None = opt(None, "folder for metrics.json and predictions.jsonl (default: the run folder)")
    batch_size: int = opt(32, "questions decoded together", ge=1)
    max_new_tokens: int | None = opt(None, "longest generation (default: from the training data)", ge=1)
    explain: bool = opt(True, "answer-first methods: also write the rationale after the answer (--no-explain skips)")
    similarity: bool = opt(True, "score the rationale's similarity to the reference (needs --explain)")
    similarity_encoder: str | None = opt(None, "sentence encoder for rationale_similarity (default: ROUGE-L F1, "
                                         "which no student is trained to match)")
    think_budget: int | str | None = opt(None, "think-first methods: force the answer after N thinking tokens; several "
                                   "(0,64,256,1024,none) sweep, one metrics row each")
    progress: bool = opt(True, "progress bars")


class DemoOptions(Options):
    """``reasondistill demo`` / ``reasondistill.demo``."""

    command: ClassVar[str] = "demo"

    out: str = opt("runs/demo", "output folder")
    quick: bool = opt(False, "fewer steps, same shape (about a minute)")
    methods: list[str] | None = opt(None, "methods to compare (default the five core methods)")
    hallucination: float = opt(0.2, "fraction of training rationales hallucinated", ge=0, le=1)
    seed: int = opt(0, "seed of the data and the students")
    progress: bool = opt(True, "progress bars")
