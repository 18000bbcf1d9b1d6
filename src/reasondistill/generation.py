"""One decoder for every caller: each method's ``answer`` (eval), ``serve`` and the ``hf`` teacher.

A :class:`Row` is one prompt to continue and the rules that end it; :func:`decode` advances rows in
batches, greedy (or sampled) with the KV cache:

- **Stop rules.** eos, and a row's ``end_ids`` (a chat template's end of turn), end a row. Its *answer end* (a :class:`StopRule`: token ids, and
  strings matched on decoded text) marks where its answer is complete; with ``explain`` decoding goes
  on after it (an answer-first student's rationale), else the row ends there. Think-first rows have a
  ``marker`` (``Answer:``): their answer end counts only after it. The strings back the ids up: for a
  tokenizer that cannot write ``"\\n"`` (an uncased WordPiece drops it) the layout gives the next
  marker as it decodes, so the early stop is never silently lost.
- **Budget forcing** (s1): a think-first row with ``think_budget`` N gets its answer marker forced
  after N thinking tokens, then writes the answer line.
- **Padding.** Rows are sorted by length, left-padded into batches, positions counted over real
  tokens; a finished row leaves the batch (its cache rows are dropped), so a long row costs the short
  ones nothing.
- **Soft thoughts.** ``prompt_embeds`` replace a row's prompt embeddings (softcot, semcot).
- **Slices.** ``max_steps`` decodes a bounded slice and leaves unfinished rows resumable (their
  tokens so far are re-read next time): serve's scheduler interleaves requests this way.
- **Timings.** Each decoding step's wall time is shared by the rows in it, so a row's seconds are its
  share of the batch's time; ``seconds_to_answer`` is that at its answer end.

Hand-written rather than ``model.generate``: forcing tokens, per-row answer times, rows leaving the
batch and resumable slices all need control between steps that generate's hooks give only per call.
``token_type_ids`` are never passed (not every model takes them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

TAIL_TOKENS = 8  # decoded tokens, beyond the longest string, searched for a stop string each step


@dataclass(frozen=True)
class StopRule:
    """Ends an answer (or a row): any of ``ids`` emitted, or any of ``strings`` in the decoded text."""

    ids: frozenset[int] = frozenset()
    strings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.ids or self.strings)

    def __or__(self, other: StopRule) -> StopRule:
        return StopRule(self.ids | other.ids, tuple(dict.fromkeys(self.strings + other.strings)))


def decoded_form(tokenizer, text: str) -> str:
    """``text`` as the tokenizer writes it back (an uncased WordPiece: ``Answer:`` -> ``answer :``),
    which is how a student trained through that tokenizer writes it."""
    return tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids, skip_special_tokens=True)


@dataclass(eq=False)
class Row:
    """One prompt to continue, its rules, and (filled by :func:`decode`) what came out."""

    prompt_ids: list[int]
    max_new_tokens: int
    answer_end: StopRule = StopRule()  # an end token always ends the answer too
    end_ids: frozenset[int] = frozenset()  # besides eos (a chat template's end of turn): end the row, not in the text
    explain: bool = False              # go on after the answer end (until eos, a stop or max_new_tokens)
    stop: StopRule = StopRule()        # ends the row wherever it is (a client's stop strings)
    marker: str | None = None          # think-first: the answer end counts only after this text
    marker_ids: list[int] = field(default_factory=list)  # what budget forcing writes
    think_budget: int | None = None
    prompt_embeds: torch.Tensor | None = None  # (len(prompt_ids), d) input embeddings, soft thoughts spliced in
    temperature: float = 0.0
    top_p: float = 1.0
    min_new_tokens: int = 0            # eos and stops are ignored before this many tokens
    meta: dict[str, Any] = field(default_factory=dict)  # the caller's bookkeeping (a route, a request)
    # ----- state, written by decode -----
    generated: list[int] = field(default_factory=list)
    answer_tokens: int | None = None   # tokens up to and including the answer end
    marker_at: int | None = None       # tokens up to the end of the marker
    forced: int = 0                    # tokens budget forcing wrote
    seconds: float = 0.0               # may start above 0: the caller's own cost (routing, soft thoughts)
    seconds_to_answer: float = 0.0
    finish_reason: str | None = None   # "stop", "length" or "cancelled"
    cancelled: bool = False            # set from any thread; the row ends at the next step
    _queue: list[int] = field(default_factory=list, repr=False)
    _timed: bool = field(default=False, repr=False)
    _ends: frozenset[int] = field(default=frozenset(), repr=False)
    _tokenizer: Any = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode([t for t in ids if t not in self._ends], skip_special_tokens=True)

    @property
    def text(self) -> str:
        """Everything written (end tokens left out)."""
        return self._decode(list(self.generated)) if self._tokenizer is not None else ""

    @property
    def answer_text(self) -> str:
        """What was written up to the answer end, cut before the answer-end string that ended it."""
        if self._tokenizer is None:
            return ""
        n = len(self.generated) if self.answer_tokens is None else self.answer_tokens
        head = self._decode(self.generated[:self.marker_at or 0])
        body = self._decode(self.generated[:n])[len(head):]
        hits = [body.find(s) for s in self.answer_end.strings if s and s in body]
        return head + (body[:min(hits)] if hits else body)

    @property
    def rest_text(self) -> str:
        """What was written after the answer end (an answer-first student's rationale)."""
        if self._tokenizer is None or self.answer_tokens is None:
            return ""
        return self._decode(self.generated[self.answer_tokens:])


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), each row padded on the left so every row ends at the last column."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids, mask


def _tail_has(row: Row, strings: tuple[str, ...], start: int) -> bool:
    if not strings:
        return False
    width = TAIL_TOKENS + max(len(s) for s in strings)
    tail = row._decode(row.generated[max(start, len(row.generated) - width):])
    return any(s and s in tail for s in strings)


def _step_row(row: Row, token: int) -> bool:
    """Append ``token`` and apply the row's rules; True when the row has ended."""
    row.generated.append(token)
    n = len(row.generated)
    early = n < row.min_new_tokens
    if token in row._ends and not early:
        row.answer_tokens = n if row.answer_tokens is None else row.answer_tokens
        row.finish_reason = "stop"
        return True
    if row.marker is not None and row.marker_at is None:
        if not row._queue and _tail_has(row, (row.marker,), 0):
            row.marker_at = n
    elif row.answer_tokens is None and row.answer_end:
        if token in row.answer_end.ids or _tail_has(row, row.answer_end.strings, row.marker_at or 0):
            row.answer_tokens = n
            if not row.explain and not early:
                row.finish_reason = "stop"
                return True
    if row.stop and not early and (token in row.stop.ids or _tail_has(row, row.stop.strings, 0)):
        row.finish_reason = "stop"
        row.answer_tokens = n if row.answer_tokens is None else row.answer_tokens
        return True
    if n >= row.max_new_tokens:
        row.finish_reason = "length"
        row.answer_tokens = n if row.answer_tokens is None else row.answer_tokens
        return True
    return False



def _pick(logits: torch.Tensor, rows: list[Row], generator: torch.Generator | None) -> list[int]:
    """The next token of each row: forced, greedy, or sampled (temperature, top-p)."""
    for i, row in enumerate(rows):
        if row._ends and len(row.generated) < row.min_new_tokens:
            logits[i, list(row._ends)] = float("-inf")
    tokens = logits.argmax(-1).tolist()
    for i, row in enumerate(rows):
        if row.marker is not None and row.marker_at is None and not row._queue and row.think_budget is not None \
                and len(row.generated) >= row.think_budget:
            row._queue = list(row.marker_ids) or [tokens[i]]
            if not row.marker_ids:
                row.marker_at = len(row.generated)
        if row._queue:
            tokens[i] = row._queue.pop(0)
            row.forced += 1
            if not row._queue and row.marker_at is None:
                row.marker_at = len(row.generated) + 1
        elif row.temperature > 0:
            probs = torch.softmax(logits[i].float() / row.temperature, -1)
            if row.top_p < 1.0:
                sorted_p, order = probs.sort(descending=True)
                drop = sorted_p.cumsum(-1) - sorted_p > row.top_p
                probs = probs.scatter(0, order, sorted_p.masked_fill(drop, 0.0))
            tokens[i] = int(torch.multinomial(probs, 1, generator=generator))
    return tokens


def _cache(out):
    """The KV cache a forward pass returns (``cache`` in transformers 5, ``past_key_values`` before)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def _decode_batch(model, rows: list[Row], pad: int, max_steps: int | None, should_stop: Callable[[], bool] | None,
                  on_answer: Callable[[Row], None] | None, on_done: Callable[[Row], None] | None,
                  generator: torch.Generator | None) -> None:
    device = next(model.parameters()).device
    inputs = [r.prompt_ids + r.generated for r in rows]
    ids, mask = left_pad(inputs, pad)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    _sync(device)
    last = time.perf_counter()
    if any(r.prompt_embeds is not None for r in rows):
        embeds = model.get_input_embeddings()(ids)
        for b, r in enumerate(rows):
            if r.prompt_embeds is not None:
                start = ids.size(1) - len(inputs[b])
                embeds[b, start:start + len(r.prompt_ids)] = r.prompt_embeds.to(device, embeds.dtype)
        out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
    else:
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, logits, nxt = _cache(out), out.logits[:, -1], positions[:, -1] + 1
    active = list(rows)
    steps = 0
    while True:
        tokens = _pick(logits.float(), active, generator)
        keep: list[int] = []
        for b, (row, token) in enumerate(zip(active, tokens)):
            ended = row.cancelled or _step_row(row, token)
            if row.cancelled:
                row.finish_reason = "cancelled"
            if not ended:
                keep.append(b)
        _sync(device)
        now = time.perf_counter()
        share, last = (now - last) / len(active), now
        for row in active:  # this step's time, shared by the rows in it
            row.seconds += share
        for row in active:
            if not row._timed and (row.answer_tokens is not None or row.done):
                row._timed, row.seconds_to_answer = True, row.seconds
                if on_answer is not None and row.finish_reason != "cancelled":
                    on_answer(row)
            if row.done and on_done is not None:
                on_done(row)
        steps += 1
        if not keep or (max_steps is not None and steps >= max_steps) or (should_stop is not None and should_stop()):
            return
        if len(keep) < len(active):  # finished rows leave the batch and the cache
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, nxt = mask[index], nxt[index]
            tokens = [tokens[b] for b in keep]
            active = [active[b] for b in keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        step_ids = torch.tensor(tokens, device=device)[:, None]
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=nxt[:, None], cache=cache,
                    use_cache=True)
        cache, logits, nxt = _cache(out), out.logits[:, -1], nxt + 1


def decode(model, tokenizer, rows: list[Row], *, batch_size: int = 32, max_steps: int | None = None,
           should_stop: Callable[[], bool] | None = None, on_answer: Callable[[Row], None] | None = None,
           on_done: Callable[[Row], None] | None = None, seed: int = 0) -> list[Row]:
    """Advance ``rows`` in place (batches of ``batch_size``, shortest first) until each has ended, or by
    at most ``max_steps`` tokens. ``on_answer(row)`` is called once per row, at its answer end, and
    ``on_done(row)`` when it ends (so a caller can hand it over while the batch goes on).
    Returns ``rows``."""
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos if eos is not None else 0)
    todo = []
    for row in rows:
        row._ends, row._tokenizer = frozenset(t for t in (eos, *row.end_ids) if t is not None), tokenizer
        if row.done:
            continue
        if row.cancelled:
            row.finish_reason = "cancelled"
        elif row.max_new_tokens <= 0:
            row.finish_reason = "length"
        else:
            todo.append(row)
    if not todo:
        return rows
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed) if any(r.temperature > 0 for r in todo) else None
    todo.sort(key=lambda r: len(r.prompt_ids) + len(r.generated))
    try:
        for start in range(0, len(todo), max(1, batch_size)):
            if should_stop is not None and should_stop():
                break
            _decode_batch(model, todo[start:start + batch_size], pad, max_steps, should_stop, on_answer, on_done,
                          generator)
    finally:
        model.train(was_training)
    return rows
