"""``teach --batch-api``: the calls go through OpenAI's batch API (``/v1/files`` + ``/v1/batches``).

Batch jobs cost about half as much and take up to a day, so they must survive a killed ``teach``.
Each round writes the calls the store still lacks as a batch JSONL (``custom_id`` = the call's
store key), uploads it, creates the batch and records its id in the call store before polling.
A rerun finds that open batch and polls it again instead of submitting (and paying for) a second
one. Finished rows are committed to the store like online calls; rows that failed with a
transient error, or that an expired batch never ran, are simply still missing and go into the
next round. The second stage of a plain model's zero-shot prompt needs the first stage's answer,
so such a run takes two rounds; a reasoning teacher's one.

A kill between the upload and the batch's creation leaves an unused uploaded file (no cost); a
kill in the instant between creation and recording the id would submit again on rerun.
"""

from __future__ import annotations

import json
import time
from typing import Any

import openai
from tqdm.auto import tqdm

from ..errors import UserError
from .openai_teacher import HINTS, OpenAITeacher, parse_response, request_body
from .plan import CallPlan, ItemState

FINAL = ("completed", "failed", "expired", "cancelled")
FATAL_ROW = {400, 401, 403, 404, 422}


def run_batches(plan: CallPlan, states: list[ItemState], teacher: OpenAITeacher, *, poll: float = 30.0,
                progress: bool = True) -> dict[str, Any]:
    """Complete every item through batches; returns what was submitted, resumed and retried."""
    client = openai.OpenAI(api_key=teacher.api_key, base_url=teacher.base_url, timeout=teacher.timeout,
                           max_retries=teacher.max_retries)
    report = {"submitted": [], "resumed": None, "rows": 0, "failed_rows": 0}
    try:
        resumed = plan.store.open_batch()
        waiting = _pending(plan, states)
        if resumed:
            batch_id, _ = resumed
            report["resumed"] = batch_id
            _collect(client, plan, _wait(client, batch_id, poll, progress), waiting, report)
            plan.store.close_batch(batch_id)
        for _ in range(teacher.max_retries + 2):  # rounds: stages, plus retries of failed rows
            waiting = _pending(plan, states)
            if not waiting:
                return report
            batch_id = _submit(client, teacher, waiting)
            plan.store.add_batch(batch_id, list(waiting))
            report["submitted"].append(batch_id)
            report["rows"] += len(waiting)
            _collect(client, plan, _wait(client, batch_id, poll, progress), waiting, report)
            plan.store.close_batch(batch_id)
        raise UserError(f"batch rows still failing after {teacher.max_retries + 1} resubmissions; "
                        "finished rows are stored, run the same command again to resume")
    except openai.APIStatusError as e:
        hint = f" ({HINTS[e.status_code]})" if e.status_code in HINTS else ""
        raise UserError(f"batch API at {teacher.url} refused: HTTP {e.status_code}: {e.message}{hint}") from None
    except openai.APIConnectionError as e:
        raise UserError(f"batch API at {teacher.url} unreachable ({type(e).__name__}); run the same "
                        "command again to resume polling") from None
    finally:
        client.close()


def _pending(plan: CallPlan, states: list[ItemState]) -> dict[str, list[tuple[ItemState, Any]]]:
    """Store key -> the items (and their call) waiting on it."""
    waiting: dict[str, list[tuple[ItemState, Any]]] = {}
    for state in states:
        step = plan.advance(state)
        if step is not None:
            call, key = step
            waiting.setdefault(key, []).append((state, call))
    return waiting


def _submit(client: openai.OpenAI, teacher: OpenAITeacher, waiting: dict[str, list]) -> str:
    lines = [json.dumps({"custom_id": key, "method": "POST", "url": f"/v1{teacher.endpoint}",
                         "body": request_body(teacher.model, items[0][1], teacher.api, teacher.extra_body)},
                        ensure_ascii=False) for key, items in waiting.items()]
    upload = client.files.create(file=("reasondistill-teach.jsonl", ("\n".join(lines) + "\n").encode("utf-8"),
                                       "application/jsonl"), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint=f"/v1{teacher.endpoint}",  # type: ignore[arg-type]
                                  completion_window="24h", metadata={"source": "reasondistill teach"})
    return batch.id


def _wait(client: openai.OpenAI, batch_id: str, poll: float, progress: bool):
    """Poll until the batch is final; a bar shows its finished rows."""
    batch = client.batches.retrieve(batch_id)
    bar = tqdm(desc=f"batch {batch_id}", unit="row", disable=not progress, dynamic_ncols=True)
    try:
        while batch.status not in FINAL:
            counts = batch.request_counts
            if counts is not None:
                bar.total = counts.total
                bar.n = counts.completed + counts.failed
                bar.set_postfix(status=batch.status, failed=counts.failed, refresh=False)
                bar.refresh()
            time.sleep(poll)
            batch = client.batches.retrieve(batch_id)
    finally:
        bar.close()
    if batch.status == "failed":
        errors = getattr(batch, "errors", None)
        first = (getattr(errors, "data", None) or [None])[0]
        raise UserError(f"batch {batch_id} failed: {getattr(first, 'message', None) or 'no reason given'}")
    if batch.status == "cancelled":
        raise UserError(f"batch {batch_id} was cancelled; finished rows are stored")
    return batch  # completed, or expired with some rows done


def _collect(client: openai.OpenAI, plan: CallPlan, batch, waiting: dict[str, list], report: dict) -> None:
    """Store every finished row of a final batch; failed rows stay missing (asked next round)."""
    fatal = []
    for file_id in (batch.output_file_id, getattr(batch, "error_file_id", None)):
        if not file_id:
            continue
        for line in client.files.content(file_id).text.splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            response = row.get("response") or {}
            code = response.get("status_code")
            if row.get("error") or code != 200:
                report["failed_rows"] += 1
                if code in FATAL_ROW:
                    body = response.get("body") or {}
                    fatal.append(f"HTTP {code}: {(body.get('error') or {}).get('message', body)}")
                continue
            key = row.get("custom_id")
            try:
                completion = parse_response(response["body"], plan.teacher.api)  # type: ignore[attr-defined]
            except (KeyError, IndexError, TypeError, AttributeError):
                report["failed_rows"] += 1
                continue
            for state, call in waiting.get(key, []):  # rows of another command's batch are not ours
                plan.finish(state, call, key, completion)
    if fatal:
        raise UserError(f"batch {batch.id}: {len(fatal)} rows refused ({fatal[0]}); they would fail again")
