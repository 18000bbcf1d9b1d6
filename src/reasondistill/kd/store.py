"""Offline teacher logits: the teacher's top-k log-probabilities per target token, stored once.

Training then needs no teacher in memory. Sequences are keyed by a hash of their token ids, which
pins the example, its rationale, the method's layout (x⊕y⊕r vs x⊕r⊕y) and the tokenizer at once.
With k below the vocabulary size both distributions are restricted to the teacher's top-k tokens and
renormalised there, so each loss compares two proper distributions on k tokens (the teacher's tail
and the student's mass outside the top-k are ignored); at k = vocabulary size this is exactly the
online loss. Log-probabilities are fp16, ids uint16 when the vocabulary fits, else int32; one
safetensors file, written atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..loss import lm_head
from .tokenizers import probe_ids, vocab_list

LOGITS_FORMAT = "reasondistill-teacher-logits/1"


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
        (row-major, position p predicting token p+1), the same order as ``hidden[:, :-1][positions]``."""
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


@torch.no_grad()
def write_teacher_logits(model, tokenizer, sequences: dict[int, tuple[list[int], int]], out_path: str | Path,
                         k: int, *, teacher: str, layouts: list[str], max_length: int, batch_size: int = 8,
                         progress: bool = True) -> dict[str, Any]:
    """Run ``model`` over ``sequences`` (key -> (ids, first stored position)) and store its top-``k``
    log-probabilities from that position on. The LM head runs on those rows only, sequence by
    sequence, so no batch x length x vocab tensor is built."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    head = lm_head(model)
    device = next(model.parameters()).device
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
        hidden = head.body(input_ids=input_ids.to(device), attention_mask=mask.to(device))
        for i, (ids, start) in enumerate(chunk):
            top = head.logits(hidden[i, start:len(ids) - 1]).float().log_softmax(-1).topk(k, dim=-1)
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
            "max_length": str(max_length), "vocab": json.dumps(vocab), "probe": json.dumps(probe_ids(tokenizer))}
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
