"""White-box distillation: learn from the teacher's next-token distributions, not only its text.

When the teacher is an open model sharing the student's vocabulary (a 7B teaching a 0.5B of the same
family), its distribution at every position of ``x ⊕ y ⊕ r`` says far more than the one sampled
rationale. Any method gains a token-level KD term by naming a teacher in its options
(``teacher_model`` or ``teacher_logits``); ``Method.run_model`` adds it for the answer and rationale
spans, weighted like the method's own loss (``answer_weight``/``rationale_weight``), so PT and PST
keep their answer emphasis. Losses (``kd_loss``):

- ``forward_kl``  KL(teacher ‖ student): mode-covering, the classic Hinton KD.
- ``reverse_kl``  KL(student ‖ teacher): mode-seeking, lets a small student drop what it cannot fit.
- ``jsd``         generalised Jensen-Shannon with mixing weight ``kd_beta`` (as in GKD).
- ``taid``        TAID: the target is softmax((1−t)·student_logits.detach() + t·teacher_logits) and the
                  loss KL(target ‖ student); ``t`` starts at 0.4 and rises to 1 by a linear floor plus
                  TAID's adaptive step (faster while the objective keeps falling), so the student first
                  chases a target near itself and ends on the teacher.

Logits are divided by ``kd_temperature`` and the divergence multiplied by its square (so gradients keep
their scale). The teacher is frozen, in eval mode, moved to the student's device on first use, and
never part of the trained modules or the run folder.

Offline logits: ``save_teacher_logits`` runs the teacher once over every training sequence and stores
its top-k log-probabilities (fp16) and token ids (uint16 when the vocabulary fits, else int32) in a
safetensors file; training then needs no teacher in memory. Sequences are keyed by a hash of their
token ids, which pins the example, its rationale, the method's layout (x⊕y⊕r vs x⊕r⊕y) and the
tokenizer at once. With k below the vocabulary size both distributions are restricted to the
teacher's top-k tokens and renormalised there, so each loss compares two proper distributions on k
tokens (the teacher's tail and the student's mass outside the top-k are ignored); at k = vocabulary
size this is exactly the online loss.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .methods.base import ANSWER, KD_DEFAULTS, PROMPT, RATIONALE

KD_LOSSES = ("forward_kl", "reverse_kl", "jsd", "taid")
# TAID's schedule (the paper's defaults): t rises from START to END; ALPHA scales the adaptive step and
# MOMENTUM smooths the relative change of the objective that drives it.
TAID_START, TAID_END, TAID_ALPHA, TAID_MOMENTUM = 0.4, 1.0, 5e-4, 0.99
LOGITS_FORMAT = "reasondistill-teacher-logits/1"
# Layouts stored by default: pre_thinking (x⊕r⊕y) and post_thinking (x⊕y⊕r, which pst shares).
DEFAULT_LAYOUTS = ("pre_thinking", "post_thinking")
SAME_LAYOUT = {"pst": "post_thinking"}  # methods whose token sequences are another method's


# ----- options ---------------------------------------------------------------------------------

def check_kd_options(method: str, options: dict[str, Any], given: dict[str, Any]) -> None:
    """Fail early on a KD option that cannot work: unknown loss, bad numbers, or KD settings
    without a teacher (they would silently do nothing)."""
    if options["kd_loss"] not in KD_LOSSES:
        raise UserError(f"kd_loss must be one of {', '.join(KD_LOSSES)}, not '{options['kd_loss']}'")
    if not float(options["kd_temperature"]) > 0:
        raise UserError(f"kd_temperature must be > 0, not {options['kd_temperature']}")
    if not float(options["kd_weight"]) >= 0:
        raise UserError(f"kd_weight must be >= 0, not {options['kd_weight']}")
    if not 0 < float(options["kd_beta"]) < 1:
        raise UserError(f"kd_beta must be strictly between 0 and 1, not {options['kd_beta']}")
    tuned = [k for k in ("kd_loss", "kd_weight", "kd_temperature", "kd_beta")
             if k in given and given[k] != KD_DEFAULTS[k]]
    if tuned and not (options["teacher_model"] or options["teacher_logits"]):
        raise UserError(f"method '{method}': {', '.join(tuned)} needs a teacher "
                        "(--teacher-model ID_OR_PATH or --teacher-logits FILE)")


# ----- losses ----------------------------------------------------------------------------------

def divergence(student_logits: torch.Tensor, teacher_logp: torch.Tensor, kind: str, *,
               temperature: float = 1.0, ids: torch.Tensor | None = None, beta: float = 0.5,
               taid_t: float = 1.0) -> torch.Tensor:
    """Per-token divergence ``[N]`` between the student's logits ``[N, V]`` and the teacher's
    log-probabilities (or logits) ``[N, V]``, or ``[N, k]`` on the support ``ids`` ``[N, k]``
    (then the student is gathered there and both are renormalised over the k tokens)."""
    s = student_logits.float()
    if ids is not None:
        s = s.gather(-1, ids)
    s = (s / temperature).log_softmax(-1)
    t = (teacher_logp.float() / temperature).log_softmax(-1)
    if kind == "forward_kl":
        d = (t.exp() * (t - s)).sum(-1)
    elif kind == "reverse_kl":
        d = (s.exp() * (s - t)).sum(-1)
    elif kind == "jsd":  # β·KL(t‖m) + (1−β)·KL(s‖m), m = β·t + (1−β)·s
        m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log(1 - beta)]), dim=0)
        d = beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)
    elif kind == "taid":  # interpolate in logit space with the detached student, then forward KL
        target = ((1 - taid_t) * s.detach() + taid_t * t).log_softmax(-1)
        d = (target.exp() * (target - s)).sum(-1)
    else:
        raise UserError(f"kd_loss must be one of {', '.join(KD_LOSSES)}, not '{kind}'")
    return d * temperature ** 2


class TAIDSchedule:
    """TAID's interpolation weight ``t``: never below the linear ramp START→END over training, and
    pushed up faster by ``ALPHA·sigmoid(m)·(1−t)`` where ``m`` is a momentum average of the
    objective's relative decrease, i.e. the target moves towards the teacher as fast as the student
    keeps up."""

    def __init__(self, start: float = TAID_START, end: float = TAID_END, alpha: float = TAID_ALPHA,
                 momentum: float = TAID_MOMENTUM) -> None:
        self.start, self.end, self.alpha, self.beta = start, end, alpha, momentum
        self.t, self.m, self.previous = start, 0.0, None
        self._values: list[float] = []

    def record(self, value: float) -> None:
        self._values.append(value)

    def step(self, step: int, max_steps: int) -> None:
        if not self._values:
            return
        value = sum(self._values) / len(self._values)
        self._values = []
        if self.previous is not None:
            delta = (self.previous - value) / (abs(self.previous) + 1e-8)
            self.m = self.beta * self.m + (1 - self.beta) * delta
        self.previous = value
        linear = self.start + (self.end - self.start) * min(1.0, step / max(1, max_steps))
        adaptive = self.t + self.alpha * (1 / (1 + math.exp(-self.m))) * (1 - self.t)
        self.t = min(self.end, max(linear, adaptive))


# ----- tokenizers ------------------------------------------------------------------------------

PROBE = "Question: 12 apples + 7 pears? Answer: yes\nRationale: The coin was flipped, so it's tails."


def vocab_list(tokenizer) -> list[str | None]:
    """Token text by id (None for unused ids): what two tokenizers must share for token-level KD."""
    vocab = tokenizer.get_vocab()
    out: list[str | None] = [None] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        out[i] = token
    return out


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
        mine = student_tokenizer(PROBE, add_special_tokens=False).input_ids
        if mine != teacher_probe:
            i = next((j for j, (a, b) in enumerate(zip(mine, teacher_probe)) if a != b), min(len(mine), len(teacher_probe)))
            raise UserError(f"student and teacher '{teacher}' share a vocabulary but tokenise differently "
                            f"(token {i} of {PROBE!r}); token-level KD needs the same tokenizer")


# ----- the teacher -----------------------------------------------------------------------------

def _teacher_path(spec: str) -> str:
    spec = str(spec)
    if spec.startswith("hf:"):
        return spec[3:]
    if ":" in spec.split("/")[0] and not Path(spec).exists():
        raise UserError(f"teacher '{spec}' is not an open model: token-level KD needs its logits "
                        "(give a Hugging Face id or a local folder, optionally as hf:ID)")
    return spec


def load_teacher(spec: str, device: torch.device | str | None = None):
    """``(model, tokenizer)`` of a frozen teacher: eval mode, no gradients."""
    from .models import load_frozen
    model, tokenizer = load_frozen(_teacher_path(spec), "teacher")
    if device is not None:
        model.to(device)
    return model, tokenizer


def tiny_student_for_teacher(size: str, teacher: str, *, seed: int = 0, max_positions: int = 1024):
    """A fresh tiny LLaMA student (``micro``/``mini``/``tiny``/``small``) that uses the teacher's
    tokenizer, so token-level KD can compare their distributions id by id."""
    from .models import load_tokenizer
    try:
        tokenizer = load_tokenizer(_teacher_path(teacher))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the tokenizer of teacher '{teacher}': {str(e).splitlines()[0]}") from None
    return tiny_student_with_tokenizer(size, tokenizer, seed=seed, max_positions=max_positions), tokenizer


def tiny_student_with_tokenizer(size: str, tokenizer, *, seed: int = 0, max_positions: int = 1024):
    from transformers import LlamaConfig, LlamaForCausalLM

    from .models import TINY_SIZES
    name = size.split(":")[0]
    if name not in TINY_SIZES:
        raise UserError(f"unknown tiny size '{size}'; valid: {', '.join(TINY_SIZES)}")
    hidden, layers, heads, mlp = TINY_SIZES[name]
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=mlp,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max_positions, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def use_stored_logits(method, data: str | Path) -> None:
    """With ``teacher_model`` set and no ``teacher_logits``, use the logits that ``teach --save-logits``
    left beside the data file when they come from the same teacher and hold this method's layout,
    so the teacher need not sit in memory during training."""
    path = logits_path(data)
    if not method.teacher_model or method.teacher_logits or not Path(data).is_file() or not path.is_file():
        return
    meta = TeacherLogits.read_metadata(path)
    layout = SAME_LAYOUT.get(method.name, method.name)
    if _teacher_path(meta["teacher"]) == _teacher_path(method.teacher_model) and layout in json.loads(meta["layouts"]):
        method.teacher_logits = method.options["teacher_logits"] = str(path)


def teacher_spec(options: dict[str, Any]) -> str | None:
    """The teacher a method's options name: ``teacher_model``, else the one recorded in ``teacher_logits``."""
    if options.get("teacher_model"):
        return options["teacher_model"]
    if options.get("teacher_logits"):
        return TeacherLogits.read_metadata(options["teacher_logits"])["teacher"]
    return None


# ----- offline top-k logits --------------------------------------------------------------------

def sequence_key(ids: Sequence[int] | torch.Tensor) -> int:
    """A 64-bit hash of a token sequence: the key of its stored teacher logits."""
    data = torch.as_tensor(ids, dtype=torch.int64).cpu().numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def logits_path(rationales: str | Path) -> Path:
    """Where the teacher's logits for a rationale file live: ``x.jsonl`` → ``x.logits.safetensors``."""
    return Path(rationales).with_suffix(".logits.safetensors")


class TeacherLogits:
    """Stored top-k teacher log-probabilities, looked up per training sequence.

    Layout: ``keys`` [S] (sequence hashes), ``starts`` [S] (position of a sequence's first stored
    row: the last prompt token), ``offsets`` [S+1] (rows of each sequence), ``ids`` [N, k] and
    ``logprobs`` [N, k] (fp16, log-softmax over the full vocabulary at temperature 1)."""

    def __init__(self, path: str | Path) -> None:
        from safetensors.torch import load_file
        self.path = Path(path)
        self.meta = self.read_metadata(path)
        t = load_file(str(path))
        self.ids, self.logprobs = t["ids"], t["logprobs"]
        self.starts, self.offsets = t["starts"].tolist(), t["offsets"].tolist()
        self.index = {key: i for i, key in enumerate(t["keys"].tolist())}

    @staticmethod
    def read_metadata(path: str | Path) -> dict[str, Any]:
        from safetensors import SafetensorError, safe_open
        if not Path(path).is_file():
            raise UserError("teacher logits file not found", path=str(path))
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError) as e:  # not a safetensors file
            raise UserError(f"not a teacher logits file ({str(e).splitlines()[0]})", path=str(path)) from None
        if meta.get("format") != LOGITS_FORMAT:
            raise UserError(f"not a teacher logits file (format {meta.get('format')!r}, expected {LOGITS_FORMAT})",
                            path=str(path))
        return {**meta, "k": int(meta["k"]), "vocab": json.loads(meta["vocab"])}

    def targets(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher ``(ids, logprobs)`` ``[N, k]`` for the True entries of ``positions`` ``[B, T-1]``
        (row-major, position p predicting token p+1), the same order as ``logits[:, :-1][positions]``."""
        # One device-to-host copy per batch; the lookups run on the CPU where the store lives.
        input_ids, positions = input_ids.cpu(), positions.cpu()
        lengths = attention_mask.sum(1).tolist()
        rows = []
        for b, n in enumerate(lengths):
            i = self.index.get(sequence_key(input_ids[b, :n]))
            if i is None:
                raise UserError("no stored teacher logits for a training sequence (were they saved for this "
                                "method's layout, data and tokenizer? re-run save_teacher_logits / teach "
                                "--save-logits with the same method)", path=str(self.path))
            local = positions[b].nonzero().squeeze(1) - self.starts[i]
            count = self.offsets[i + 1] - self.offsets[i]
            if len(local) and (local.min() < 0 or local.max() >= count):
                raise UserError("stored teacher logits do not cover this sequence's target positions",
                                path=str(self.path))
            rows.append(self.offsets[i] + local)
        rows = torch.cat(rows)
        return self.ids[rows].int(), self.logprobs[rows]

    @property
    def bytes_per_token(self) -> float:
        return (self.ids.element_size() + self.logprobs.element_size()) * self.ids.size(1)


@torch.no_grad()
def save_teacher_logits(teacher: str, data: str | Path | None, out_path: str | Path, k: int,
                        method: str | Sequence[str] = DEFAULT_LAYOUTS, *, method_options: dict | None = None,
                        examples: list | None = None, split: str = "all", n: int | None = None, seed: int = 0,
                        format: str | None = None, max_length: int = 512, batch_size: int = 8,
                        device: str | torch.device | None = None, progress: bool = True) -> dict[str, Any]:
    """Run ``teacher`` once over the training sequences of ``method`` (one name or several layouts;
    default pre_thinking and post_thinking, which pst shares) built from ``data`` (a rationale file or
    task spec, loaded like ``train --data``) or ``examples``, and store its top-``k`` log-probabilities
    per target token in ``out_path`` (safetensors, written atomically).

    Only positions from the last prompt token on are stored (the prompt is never predicted).
    Sequences are truncated at ``max_length`` like the trainer does: pass the training value.
    Returns ``{path, sequences, tokens, k, bytes, bytes_per_token, teacher}``.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from .methods import get_method
    from .tasks import load_task
    from .training import build_features

    if int(k) < 1:
        raise UserError(f"--save-logits needs k >= 1, not {k}")
    device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_teacher(teacher, device)
    if examples is None:
        if data is None:
            raise UserError("save_teacher_logits needs data or examples")
        examples = load_task(str(data), split, n=n, seed=seed, format=format)
    layouts = [method] if isinstance(method, str) else list(method)
    sequences: dict[int, tuple[list[int], int]] = {}  # key -> (ids, first stored position)
    for name in layouts:
        m = get_method(SAME_LAYOUT.get(name, name), **(method_options or {}))
        usable = [ex for ex in examples if not m.uses_rationale or (ex.rationale or "").strip()]
        try:
            features = build_features(m, usable, tokenizer, max_length)
        except UserError as e:  # e.g. kpod: its sequences come out of its training-time preparation
            raise UserError(f"cannot build {name}'s training sequences before training ({e}); "
                            "use an online teacher (--teacher-model) for this method") from None
        for f in features:
            targets = [i for i, s in enumerate(f.spans[1:]) if s != PROMPT]
            if targets:
                sequences.setdefault(sequence_key(f.input_ids), (f.input_ids, targets[0]))
    if not sequences:
        raise UserError("no training sequences to store teacher logits for (do the examples have rationales?)")

    vocab = vocab_list(tokenizer)
    k = min(int(k), model.get_output_embeddings().weight.size(0))
    id_dtype = torch.uint16 if model.config.vocab_size <= 65536 else torch.int32
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    keys = sorted(sequences, key=lambda key: len(sequences[key][0]))
    all_ids, all_logp, starts, counts = [], [], [], []
    for b in tqdm(range(0, len(keys), batch_size), desc="teacher logits", disable=not progress):
        chunk = [sequences[key] for key in keys[b:b + batch_size]]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(input_ids)
        for i, (ids, _) in enumerate(chunk):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            mask[i, :len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
        for i, (ids, start) in enumerate(chunk):
            top = logits[i, start:len(ids) - 1].float().log_softmax(-1).topk(k, dim=-1)
            all_ids.append(top.indices.cpu().to(torch.int32).to(id_dtype))
            all_logp.append(top.values.cpu().half())
            starts.append(start)
            counts.append(len(ids) - 1 - start)
    offsets = [0]
    for c in counts:
        offsets.append(offsets[-1] + c)
    tensors = {"keys": torch.tensor(keys, dtype=torch.int64), "starts": torch.tensor(starts, dtype=torch.int64),
               "offsets": torch.tensor(offsets, dtype=torch.int64), "ids": torch.cat(all_ids),
               "logprobs": torch.cat(all_logp)}
    meta = {"format": LOGITS_FORMAT, "teacher": str(teacher), "k": str(k), "layouts": json.dumps(layouts),
            "max_length": str(max_length), "vocab": json.dumps(vocab),
            "probe": json.dumps(tokenizer(PROBE, add_special_tokens=False).input_ids)}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(out_path)
    tokens = offsets[-1]
    size = out_path.stat().st_size
    return {"path": str(out_path), "teacher": str(teacher), "sequences": len(keys), "tokens": tokens, "k": k,
            "bytes": size, "bytes_per_token": round(size / max(1, tokens), 1),
            "array_bytes_per_token": (tensors["ids"].element_size() + 2) * k}


# ----- the KD term -----------------------------------------------------------------------------

class Distiller:
    """The KD term of one training run: the teacher (online) or its stored logits (offline), the
    loss settings, the span weights of the method, and TAID's schedule."""

    def __init__(self, options: dict[str, Any], tokenizer, span_weights: dict[int, float] | None = None) -> None:
        self.kind = options["kd_loss"]
        self.weight = float(options["kd_weight"])
        self.temperature = float(options["kd_temperature"])
        self.beta = float(options["kd_beta"])
        self.span_weights = span_weights
        self.taid = TAIDSchedule() if self.kind == "taid" else None
        self.teacher = None
        self.store = None
        if options.get("teacher_logits"):
            self.store = TeacherLogits(options["teacher_logits"])
            check_same_tokenizer(tokenizer, self.store.meta["vocab"], self.store.meta["teacher"],
                                 json.loads(self.store.meta["probe"]) if "probe" in self.store.meta else None)
        else:
            self.teacher, teacher_tokenizer = load_teacher(options["teacher_model"])
            check_same_tokenizer(tokenizer, vocab_list(teacher_tokenizer), options["teacher_model"],
                                 teacher_tokenizer(PROBE, add_special_tokens=False).input_ids)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss": kd_weight·kd, "kd": the span-weighted divergence, ["taid_t"]}`` for one batch."""
        ids = batch["input_ids"]
        if logits.shape[:2] != ids.shape:
            raise UserError("token-level KD needs the student's logits aligned with the batch's input_ids "
                            f"(got logits {tuple(logits.shape[:2])} for ids {tuple(ids.shape)})")
        codes_all = batch["spans"][:, 1:]
        select = (codes_all != PROMPT) & (batch["attention_mask"][:, 1:] > 0)
        student = logits[:, :-1][select]
        if self.store is not None:
            support, teacher = self.store.targets(ids, batch["attention_mask"], select)
            support, teacher = support.to(student.device).long(), teacher.to(student.device)
        else:
            if next(self.teacher.parameters()).device != ids.device:
                self.teacher.to(ids.device)
            with torch.no_grad():
                teacher = self.teacher(input_ids=ids, attention_mask=batch["attention_mask"]).logits[:, :-1][select]
            width = min(student.size(-1), teacher.size(-1))  # padded vocab rows differ within a family
            student, teacher, support = student[..., :width], teacher[..., :width], None
        t = self.taid.t if self.taid else 1.0
        per_token = divergence(student, teacher, self.kind, temperature=self.temperature, ids=support,
                               beta=self.beta, taid_t=t)
        codes = codes_all[select]
        w = batch["weights"][:, 1:][select] if "weights" in batch else torch.ones_like(per_token)
        if self.span_weights is None:  # one loss over all target tokens, like the method's own NTP
            kd = (per_token * w).sum() / w.sum().clamp(min=1e-8)
        else:
            kd = per_token.sum() * 0.0
            for code in (ANSWER, RATIONALE):
                wc = w * (codes == code)
                if wc.sum() > 0:
                    kd = kd + self.span_weights.get(code, 1.0) * (per_token * wc).sum() / wc.sum()
        out = {"loss": self.weight * kd, "kd": kd}
        if self.taid is not None:
            self.taid.record(float(kd.detach()))
            out["taid_t"] = torch.tensor(t)
        return out

    def on_step(self, step: int, max_steps: int) -> None:
        """Advance TAID's t (on --resume its momentum restarts; t restarts from the linear floor)."""
        if self.taid is not None:
            self.taid.step(step, max_steps)
