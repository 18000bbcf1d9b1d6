"""Batched local generation behind an async queue, shared by the ``hf`` teacher and ``serve``.

A causal LM on one device answers 32 prompts in about the time of a few, so concurrent callers
should share a batch. :class:`Batcher` gathers whatever is queued (waiting a few milliseconds for
stragglers), runs one batched generation in a single worker thread (the event loop stays free to
accept and answer other requests), and hands each caller its own result. Errors go to the callers
of that batch only; the queue keeps running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class GenJob:
    """One prompt to continue. ``stop_at_newline`` ends decoding at the first token holding a
    newline (that token stays in the text); ``stop`` strings cut the text after decoding."""

    prompt: str
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop_at_newline: bool = False
    stop: list[str] = field(default_factory=list)


@dataclass
class GenResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


def cut_at(text: str, stops: list[str]) -> tuple[str, bool]:
    """``text`` up to the earliest stop string (not included), and whether one was found."""
    hits = [text.index(s) for s in stops if s and s in text]
    return (text[:min(hits)], True) if hits else (text, False)


class QueueFull(Exception):
    """More requests waiting than the queue allows; callers should answer 503 and retry later."""


def newline_ids(tokenizer) -> list[int]:
    from ..layout import newline_token_ids
    return newline_token_ids(tokenizer)


@torch.no_grad()
def generate_jobs(model, tokenizer, jobs: list[GenJob], end_ids: list[int] | None = None) -> list[GenResult]:
    """Run jobs in as few ``model.generate`` calls as their sampling settings allow.

    Jobs with the same (temperature, top_p, newline stop) share a call decoding up to the largest
    ``max_new_tokens``; each result is then cut at its own limit and stop strings, which for greedy
    decoding equals generating it alone. ``end_ids`` (a chat template's end of turn) end a job like
    the eos and are left out of its text.
    """
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    ends = {eos, *(end_ids or [])}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    results: list[GenResult | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault((job.temperature, job.top_p, job.stop_at_newline), []).append(i)
    for (temperature, top_p, at_newline), idx in groups.items():
        stops = list(dict.fromkeys([eos, *(end_ids or []), *(newline_ids(tokenizer) if at_newline else [])]))
        stop_set = set(stops)
        enc = tokenizer([jobs[i].prompt for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: enc[k].to(device) for k in ("input_ids", "attention_mask")}  # never token_type_ids
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else \
            {"do_sample": False}
        out = model.generate(**enc, max_new_tokens=max(jobs[i].max_new_tokens for i in idx), eos_token_id=stops,
                             pad_token_id=pad, use_cache=True, **sampling)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        for row, i in enumerate(idx):
            job = jobs[i]
            seq = out[row, enc["input_ids"].shape[1]:].tolist()[:job.max_new_tokens]
            n, reason = len(seq), "length"
            for j, t in enumerate(seq):
                if t in stop_set:
                    n, reason = j + 1, "stop"
                    break
            text = tokenizer.decode([t for t in seq[:n] if t not in ends], skip_special_tokens=True)
            text, cut = cut_at(text, job.stop)
            results[i] = GenResult(text, int(prompt_lens[row]), n, "stop" if cut else reason)
    return results  # type: ignore[return-value]


class Batcher:
    """An async front for a synchronous batch function: ``await batcher.submit(item)``."""

    def __init__(self, run_batch: Callable[[list[Any]], list[Any]], *, max_batch: int = 32,
                 wait_ms: float = 3.0, max_queue: int = 4096) -> None:
        self.run_batch, self.max_batch, self.wait, self.max_queue = run_batch, max_batch, wait_ms / 1000, max_queue
        self.batches = 0
        self.largest_batch = 0
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reasondistill-generate")

    async def submit(self, item: Any) -> Any:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._loop())
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests already waiting")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), left))
                except asyncio.TimeoutError:
                    break
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # callers that gave up
            if not batch:
                continue
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self.run_batch, [item for item, _ in batch])
            except Exception as e:  # the callers of this batch see the error; the queue goes on
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        self._worker = None  # the next submit starts a new one, in whatever loop is running then
