"""Fair batched decoding behind an async front, shared by ``serve`` and the ``hf`` teacher.

Callers submit *jobs* (one request's rows) from any event loop. One worker thread owns the model:
it builds a batch round-robin across jobs (one row of each in turn, up to ``max_batch``), decodes
it with :func:`~reasondistill.generation.decode`, and, once ``slice_tokens`` steps have passed while
another job waits, cuts the slice and picks again (the cut rows resume where they were). So a
request of 128 prompts × 2048 tokens shares each slice with the small requests that came after it
instead of running before them, and a lone request is never cut at all.

Work is bounded before it is admitted: a job's work is its rows × their token budget; a new job that
would take the queued work over ``max_queued_work``, or the jobs over ``max_jobs``, is refused with
:class:`Busy` (an estimate of when to retry, from the measured decoding rate). A cancelled job's rows
end at the next decoding step; closing the scheduler stops the worker within a step and fails what
was left.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .generation import Row, decode


class JobCancelled(Exception):
    """The job was cancelled (its client left) before its rows ended."""


class Busy(Exception):
    """Refused before admitting: ``status`` 429 (too many jobs) or 503 (too much work queued)."""

    def __init__(self, message: str, status: int, retry_after: int) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


@dataclass(eq=False)
class Job:
    """One caller's rows. ``prepare`` builds them in the worker thread (it may use the model: routing,
    soft thoughts); ``on_update`` runs in the caller's loop when a row's answer ends or a slice ends."""

    prepare: Callable[[], list[Row]]
    work: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    on_update: Callable[[], None] | None = None
    rows: list[Row] | None = None
    cancelled: bool = False
    submitted: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        """Stop this job's work: its rows end at the next decoding step (safe from any thread)."""
        self.cancelled = True
        for row in self.rows or []:
            row.cancelled = True

    def _notify(self) -> None:
        if self.on_update is not None:
            self.loop.call_soon_threadsafe(self.on_update)


class Scheduler:
    """``await scheduler.run(prepare, work)`` -> the decoded rows; see the module docstring."""

    def __init__(self, model, tokenizer, *, max_batch: int = 32, slice_tokens: int = 16, wait_ms: float = 2.0,
                 max_jobs: int = 1024, max_queued_work: int = 4_000_000) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.slice_tokens, self.wait_s = max(1, max_batch), max(1, slice_tokens), wait_ms / 1000
        self.max_jobs, self.max_queued_work = max_jobs, max_queued_work
        self.jobs: list[Job] = []
        self.queued_work = 0
        self.stats = {"batches": 0, "largest_batch": 0, "slices_cut": 0, "tokens": 0, "active_rows": 0,
                      "cancelled_jobs": 0}
        self._rate = 0.0  # tokens per second, a moving average
        self._turn = 0    # where the next round-robin pass starts
        self._arrived = False
        self._closing = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # ----- the callers' side --------------------------------------------------------------------
    def retry_after(self) -> int:
        return int(min(60, max(1, self.queued_work / self._rate))) if self._rate > 0 else 1

    def submit(self, prepare: Callable[[], list[Row]], work: int, on_update: Callable[[], None] | None = None) -> Job:
        """Admit a job or raise :class:`Busy`; call from the caller's event loop."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._closing:
                raise Busy("the server is shutting down", 503, 1)
            if len(self.jobs) >= self.max_jobs:
                raise Busy(f"{len(self.jobs)} requests already queued", 429, self.retry_after())
            if self.jobs and self.queued_work + work > self.max_queued_work:
                raise Busy(f"{self.queued_work} tokens of work already queued", 503, self.retry_after())
            job = Job(prepare, work, loop, loop.create_future(), on_update)
            self.jobs.append(job)
            self.queued_work += work
            self._arrived = True
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="reasondistill-decode", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return job

    async def wait(self, job: Job) -> list[Row]:
        """The job's rows once all have ended; cancelling the awaiting task cancels the job."""
        try:
            return await asyncio.shield(job.future)
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    async def run(self, prepare: Callable[[], list[Row]], work: int) -> list[Row]:
        return await self.wait(self.submit(prepare, work))

    def cancel(self, job: Job) -> None:
        if not job.cancelled:
            job.cancel()
            self.stats["cancelled_jobs"] += 1
        with self._cond:
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (within a decoding step) and fail every job still queued. A later submit
        starts a new worker (a teacher reused by another ``teach`` call)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            left, self.jobs = self.jobs, []
            self.queued_work = 0
            self._closing = False
            self._thread = None
        for job in left:
            self._finish(job, Busy("the server is shutting down", 503, 1))

    # ----- the worker ---------------------------------------------------------------------------
    def _finish(self, job: Job, error: BaseException | None = None) -> None:
        def settle() -> None:
            if job.future.done():
                return
            if error is not None:
                job.future.set_exception(error)
                job.future.exception()  # a caller that left never reads it: no "never retrieved" noise
            else:
                job.future.set_result(job.rows)
            if job.on_update is not None:
                job.on_update()
        try:
            job.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the caller's loop is gone; nobody is waiting
            pass

    def _retire(self, job: Job, error: BaseException | None = None) -> None:
        with self._cond:
            if job in self.jobs:
                self.jobs.remove(job)
                self.queued_work -= job.work
        self._finish(job, error)

    def _pick(self) -> tuple[list[Row], bool]:
        """Round-robin: one unfinished row of each job in turn until the batch is full. Also says
        whether a job was left out entirely (then the slice is cut for it; a job's own rows wait
        for room without cutting, which would only re-read their prompts)."""
        with self._cond:
            jobs = [j for j in self.jobs if j.rows is not None and not j.cancelled]
            self._arrived = False
        if not jobs:
            return [], False
        start = self._turn % len(jobs)
        self._turn += 1
        queues = [[r for r in j.rows if not r.done] for j in jobs[start:] + jobs[:start]]
        batch: list[Row] = []
        served = [False] * len(queues)
        while len(batch) < self.max_batch and any(queues):
            for i, q in enumerate(queues):
                if q and len(batch) < self.max_batch:
                    batch.append(q.pop(0))
                    served[i] = True
        return batch, any(q and not done for q, done in zip(queues, served))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self.jobs and not self._closing:
                    self._cond.wait(0.5)
                if self._closing:
                    return
            if self.wait_s:
                time.sleep(self.wait_s)  # a moment for company: concurrent requests share a batch
            for job in list(self.jobs):
                if job.cancelled:
                    self._retire(job, JobCancelled())
                elif job.rows is None:
                    try:
                        job.rows = job.prepare()
                        if job.cancelled:
                            job.cancel()
                    except Exception as e:  # this job's caller sees the error; the others go on
                        self._retire(job, e)
            batch, left_out = self._pick()
            if not batch:
                with self._cond:  # nothing decodable yet (jobs preparing or retired): wait a moment
                    if self.jobs and not self._closing:
                        self._cond.wait(0.01)
                continue
            self._decode(batch, left_out)

    def _decode(self, batch: list[Row], left_out: bool) -> None:
        owner = {id(r): j for j in list(self.jobs) if j.rows for r in j.rows}
        steps = [0]

        def cut() -> bool:
            steps[0] += 1
            if self._closing:
                return True
            if steps[0] >= self.slice_tokens and (left_out or self._arrived):
                self.stats["slices_cut"] += 1
                return True
            return False

        def answered(row: Row) -> None:
            job = owner.get(id(row))
            if job is not None:
                job._notify()

        def ended(row: Row) -> None:  # a job whose rows have all ended is answered now, not after the slice
            job = owner.get(id(row))
            if job is not None and all(r.done for r in job.rows):
                self._retire(job, JobCancelled() if job.cancelled else None)

        before = sum(len(r.generated) for r in batch)
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
        self.stats["active_rows"] = len(batch)
        started = time.perf_counter()
        try:
            decode(self.model, self.tokenizer, batch, batch_size=len(batch), should_stop=cut, on_answer=answered,
                   on_done=ended)
        except Exception as e:  # the jobs in this batch fail; the queue goes on
            for job in {id(owner[id(r)]): owner[id(r)] for r in batch if id(r) in owner}.values():
                self._retire(job, e)
            return
        finally:
            self.stats["active_rows"] = 0
        made = sum(len(r.generated) for r in batch) - before
        self.stats["tokens"] += made
        seconds = time.perf_counter() - started
        if made and seconds > 0:
            self._rate = made / seconds if self._rate == 0 else 0.8 * self._rate + 0.2 * made / seconds
        for job in {id(owner[id(r)]): owner[id(r)] for r in batch if id(r) in owner}.values():
            job._notify()  # a slice's progress, for streaming clients
            if all(r.done for r in job.rows):
                self._retire(job, JobCancelled() if job.cancelled else None)
