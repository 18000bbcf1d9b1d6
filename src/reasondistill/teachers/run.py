"""``teach``: ask a teacher for rationales, keep every finished call, write a clean rationale file.

The pipeline: load the task, build prompts (zero-shot two-stage or few-shot), run ``concurrency``
workers that each take the next (question, sample) and make the calls its :class:`~.plan.CallPlan`
says it needs (or, with ``batch_api``, submit them as OpenAI batches), look every call up in the
durable store first and commit it there the moment it returns, then read traces and answers,
filter by correctness, drop truncated ones, dedup, select among samples, and write the output
atomically. A rerun after a crash finds every finished call in the store and asks only for the
rest; what a kill can cost is the calls in flight at that moment (at most ``concurrency``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_jsonl
from ..rationales import (SELECT, FewShotCoT, ZeroShotCoT, dedup_records, keep_records, record_from_example,
                          select_records, selection_stats, task_stats)
from ..rationales.filtering import KEEP, cost
from ..tasks import load_path, load_task
from .base import Teacher
from .registry import get_teacher
from .plan import CallPlan, ItemState, teacher_label
from .reasoning import REASONING
from .store import CallStore


def sidecar(out: Path, suffix: str) -> Path:
    """``runs/x/rationales.jsonl`` -> ``runs/x/rationales<suffix>`` (the store, the statistics)."""
    return out.parent / f"{out.stem}{suffix}"


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise UserError("is a folder; --out takes the rationale file to write (e.g. rationales.jsonl)", path=str(out))


def teach(data: str, teacher: str | Teacher, out: str | Path, *, split: str | None = None, n: int | None = None,
          seed: int = 0, hallucination: float = 0.0, format: str | None = None, base_url: str | None = None,
          api: str | None = None, samples: int = 1, temperature: float | None = None, top_p: float = 1.0,
          max_tokens: int = 256, concurrency: int = 8, timeout: float = 60.0, max_retries: int = 6,
          backoff: float = 1.0, extra_body: dict | None = None, few_shot: str | Path | None = None,
          shots: int | None = None, keep: str = "correct", dedup: bool = True, store: str | Path | None = None,
          progress: bool = True, reasoning: str = "auto", select: str = "all-correct",
          max_rationale_tokens: int | None = None, batch_api: bool = False, batch_poll: float = 30.0,
          price_in: float | None = None, price_out: float | None = None) -> dict[str, Any]:
    """Collect ``samples`` rationales per question of ``data`` from ``teacher`` (a spec such as
    ``openai:gpt-4o-mini``, or a :class:`Teacher` object, which is then reused as is) and write the
    kept ones to ``out`` (teacher-record JSONL, usable as ``train --data``). Returns statistics,
    also written beside ``out`` as ``<out stem>.stats.json``.

    ``split`` defaults to all of a file, the train split of a synthetic or hub task. Temperature
    defaults to 0 for one sample and 0.7 for several. Finished calls live in ``store`` (default
    ``<out stem>.calls.sqlite`` beside ``out``); rerunning the same command resumes from it.

    ``reasoning="auto"`` takes a reasoning teacher's trace as the rationale (``off``: the text as
    a plain model's). ``select`` chooses among a question's kept samples, ``max_rationale_tokens``
    drops longer rationales. ``batch_api`` submits the calls through ``/v1/batches`` (openai:
    teachers), polling every ``batch_poll`` seconds. ``price_in``/``price_out`` (dollars per
    million tokens) add the cost to the statistics.
    """
    out = Path(out)
    _check_out(out)
    if keep not in KEEP:
        raise UserError(f"--keep must be one of {', '.join(KEEP)}, not '{keep}'")
    if reasoning not in REASONING:
        raise UserError(f"--reasoning must be one of {', '.join(REASONING)}, not '{reasoning}'")
    if select not in SELECT:
        raise UserError(f"--select must be one of {', '.join(SELECT)}, not '{select}'")
    if keep == "all" and select != "all-correct":
        raise UserError(f"--select {select} chooses among correct rationales; it needs --keep correct")
    if max_rationale_tokens is not None and max_rationale_tokens < 1:
        raise UserError(f"--max-rationale-tokens must be at least 1, got {max_rationale_tokens}")
    if batch_poll <= 0:
        raise UserError("--batch-poll must be positive")
    if samples < 1 or concurrency < 1 or max_tokens < 1:
        raise UserError("--samples, --concurrency and --max-tokens must be at least 1")
    if temperature is None:
        temperature = 0.0 if samples == 1 else 0.7
    if temperature < 0 or not 0 < top_p <= 1:
        raise UserError("--temperature must be >= 0 and --top-p in (0, 1]")
    if samples > 1 and temperature == 0:
        raise UserError(f"--samples {samples} with --temperature 0 would ask for the same rationale "
                        f"{samples} times; give a temperature above 0")
    if split is None:
        split = "all" if Path(str(data)).is_file() else "train"
    examples = load_task(str(data), split, n=n, seed=seed, hallucination=hallucination, format=format)
    prompter = (FewShotCoT.from_file(few_shot, shots, max_tokens) if few_shot
                else ZeroShotCoT(max_tokens))
    if isinstance(teacher, str):
        teacher = get_teacher(teacher, base_url=base_url, api=api, concurrency=concurrency, timeout=timeout,
                              max_retries=max_retries, backoff=backoff, extra_body=extra_body)
    if batch_api and teacher.kind != "openai":
        raise UserError(f"--batch-api needs an openai: teacher, not '{teacher.spec}'")
    store_path = Path(store) if store else sidecar(out, ".calls.sqlite")
    states = [ItemState(ex, s) for ex in examples for s in range(samples)]

    t0 = time.perf_counter()
    with CallStore(store_path) as calls:
        stored_before = len(calls)
        plan = CallPlan(prompter, teacher, calls, temperature, top_p, reasoning)
        if batch_api:
            from .batch_api import run_batches
            batches = run_batches(plan, states, teacher, poll=batch_poll, progress=progress)
        else:
            batches = None
            asyncio.run(_collect(plan, states, teacher, concurrency, progress))
        stored_after = len(calls)
        label = teacher_label(plan.identity)
        mine = json.dumps(plan.identity, sort_keys=True)
        others: Counter = Counter()
        for identity, count in calls.teachers().items():
            if identity != mine:
                others[teacher_label(json.loads(identity) or {})] += count
    seconds = time.perf_counter() - t0

    records = [plan.record(state, samples) for state in states]
    kept = keep_records(records, keep)
    if dedup:
        kept = dedup_records(kept)
    choices = selection_stats(kept, max_rationale_tokens) if keep == "correct" else {}
    kept = select_records(kept, select, max_rationale_tokens)
    atomic_write_jsonl(out, kept)
    stats = task_stats(records, kept)
    summary = {
        "data": str(data), "split": split, "teacher": teacher.spec, "out": str(out), "store": str(store_path),
        "prompting": prompter.name, "reasoning": reasoning, "samples": samples, "temperature": temperature,
        "keep": keep, "dedup": dedup, "select": select, "max_rationale_tokens": max_rationale_tokens,
        "stats": stats, "selection": choices,
        "calls": {"needed": plan.hits + stored_after - stored_before, "from_store": plan.hits,
                  "new": stored_after - stored_before, "teacher": label, "requests": teacher.requests,
                  "retries": teacher.retries, "failures": dict(getattr(teacher, "failures", {})),
                  "other_teachers_in_store": dict(others)},
        "seconds": round(seconds, 3),
    }
    if batches is not None:
        summary["batches"] = batches
    if price_in is not None or price_out is not None:
        summary["cost"] = {"price_in": price_in, "price_out": price_out,
                           "total": round(cost(stats["total"], price_in, price_out) or 0.0, 6)}
    atomic_write_json(sidecar(out, ".stats.json"), summary)
    return summary


async def _collect(plan: CallPlan, states: list[ItemState], teacher: Teacher, concurrency: int,
                   progress: bool) -> None:
    """Complete every item: ``concurrency`` workers, each taking the next item and making the
    calls the store lacks, committing each answer before it is used."""
    todo = iter(states)  # one shared iterator: every item goes to exactly one worker
    bar = tqdm(total=len(states), desc=f"teach {teacher.spec}", unit="q", disable=not progress, dynamic_ncols=True)

    async def worker() -> None:
        for state in todo:
            while (step := plan.advance(state)) is not None:
                call, key = step
                plan.finish(state, call, key, await teacher.complete(call))
            bar.update(1)
            bar.set_postfix(new=teacher.requests, stored=plan.hits, retries=teacher.retries, refresh=False)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(states))):
                group.create_task(worker())
    except BaseExceptionGroup as eg:
        errors = list(_leaves(eg))
        raise next((e for e in errors if isinstance(e, UserError)), errors[0]) from None
    finally:
        bar.close()
        await teacher.aclose()


def _leaves(group: BaseExceptionGroup):
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            yield from _leaves(e)
        else:
            yield e


def filter_file(data: str | Path, out: str | Path, *, keep: str = "correct", dedup: bool = True,
                format: str | None = None) -> dict[str, Any]:
    """Filter an existing rationale file (any loadable format) into teacher records."""
    out = Path(out)
    _check_out(out)
    if keep not in KEEP:
        raise UserError(f"--keep must be one of {', '.join(KEEP)}, not '{keep}'")
    records = [record_from_example(ex) for ex in load_path(str(data), format)]
    kept = keep_records(records, keep)
    if dedup:
        kept = dedup_records(kept)
    atomic_write_jsonl(out, kept)
    return {"data": str(data), "out": str(out), "keep": keep, "stats": task_stats(records, kept)}
