"""``teach``: ask a teacher for rationales, keep every finished call, write a clean rationale file.

The pipeline: load the task, build prompts (zero-shot two-stage or few-shot), run ``concurrency``
workers that each take the next (question, sample) and make its calls, look every call up in the
durable store first and commit it there the moment it returns, then parse answers, filter by
correctness, dedup, and write the output atomically. A rerun after a crash finds every finished
call in the store and asks only for the rest.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_jsonl
from ..rationales import (FewShotCoT, Stage, ZeroShotCoT, dedup_records, keep_records, make_record,
                          record_from_example, task_stats)
from ..rationales.filtering import KEEP
from ..tasks import Example, load_path, load_task
from . import Call, Teacher, get_teacher
from .store import CallStore, call_key


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
          progress: bool = True) -> dict[str, Any]:
    """Collect ``samples`` rationales per question of ``data`` from ``teacher`` (a spec such as
    ``openai:gpt-4o-mini``, or a :class:`Teacher` object, which is then reused as is) and write the
    kept ones to ``out`` (teacher-record JSONL, usable as ``train --data``). Returns statistics,
    also written beside ``out`` as ``<out stem>.stats.json``.

    ``split`` defaults to all of a file, the train split of a synthetic or hub task. Temperature
    defaults to 0 for one sample and 0.7 for several. Finished calls live in ``store`` (default
    ``<out stem>.calls.sqlite`` beside ``out``); rerunning the same command resumes from it.
    """
    out = Path(out)
    _check_out(out)
    if keep not in KEEP:
        raise UserError(f"--keep must be one of {', '.join(KEEP)}, not '{keep}'")
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
    store_path = Path(store) if store else sidecar(out, ".calls.sqlite")
    items = [(ex, s) for ex in examples for s in range(samples)]

    t0 = time.perf_counter()
    with CallStore(store_path) as calls:
        stored_before = len(calls)
        results, from_store = asyncio.run(_collect(items, prompter, teacher, calls, temperature, top_p,
                                                   concurrency, progress))
        stored_after = len(calls)
    seconds = time.perf_counter() - t0

    records = []
    for (ex, sample), (rationale, answer_text) in zip(items, results):
        teacher_answer, line = prompter.parse(ex, rationale, answer_text) if rationale.strip() else (None, "")
        records.append(make_record(ex, rationale, teacher_answer, teacher.spec, sample=sample, samples=samples,
                                   answer_line=line))
    kept = keep_records(records, keep)
    if dedup:
        kept = dedup_records(kept)
    atomic_write_jsonl(out, kept)
    summary = {
        "data": str(data), "split": split, "teacher": teacher.spec, "out": str(out), "store": str(store_path),
        "prompting": prompter.name, "samples": samples, "temperature": temperature, "keep": keep, "dedup": dedup,
        "stats": task_stats(records, kept),
        "calls": {"needed": from_store + stored_after - stored_before, "from_store": from_store,
                  "new": stored_after - stored_before, "requests": teacher.requests, "retries": teacher.retries,
                  "failures": dict(getattr(teacher, "failures", {}))},
        "seconds": round(seconds, 3),
    }
    atomic_write_json(sidecar(out, ".stats.json"), summary)
    return summary


async def _collect(items: list[tuple[Example, int]], prompter: ZeroShotCoT | FewShotCoT, teacher: Teacher,
                   store: CallStore, temperature: float, top_p: float, concurrency: int,
                   progress: bool) -> tuple[list[tuple[str, str | None]], int]:
    """(rationale, answer-stage text) per item, and how many calls the store already had."""
    identity = teacher.identity()
    results: list[tuple[str, str | None]] = [("", None)] * len(items)
    hits = 0
    todo = iter(enumerate(items))  # one shared iterator: every item goes to exactly one worker
    bar = tqdm(total=len(items), desc=f"teach {teacher.spec}", unit="q", disable=not progress, dynamic_ncols=True)

    async def ask(stage: Stage, example: Example, sample: int) -> str:
        nonlocal hits
        call = Call(stage.prompt, stage.kind, stage.max_tokens, stage.temperature, top_p, stage.stop, sample, example)
        key = call_key(identity, call.prompt, call.params(), sample)
        text = store.get(key)
        if text is not None:
            hits += 1
            return text
        text = await teacher.complete(call)
        store.put(key, {"teacher": identity, "prompt": call.prompt, **call.params(), "sample": sample,
                        "kind": call.kind, "id": example.id}, text)
        return text

    async def worker() -> None:
        for i, (example, sample) in todo:
            first = prompter.reasoning(example, temperature)
            rationale = await ask(first, example, sample)
            answer_text = None
            if prompter.two_stage and rationale.strip():
                answer_text = await ask(prompter.answering(example, first.prompt, rationale), example, sample)
            results[i] = (rationale, answer_text)
            bar.update(1)
            bar.set_postfix(new=teacher.requests, stored=hits, retries=teacher.retries, refresh=False)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(items))):
                group.create_task(worker())
    except BaseExceptionGroup as eg:
        errors = list(_leaves(eg))
        raise next((e for e in errors if isinstance(e, UserError)), errors[0]) from None
    finally:
        bar.close()
        await teacher.aclose()
    return results, hits


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
