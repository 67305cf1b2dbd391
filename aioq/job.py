"""Handles on enqueued jobs: await their result, read their state and record."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from ._core.event import Note
from ._core.message import (
    NIL,
    ErrorInfo,
    JobState,
    Outcome,
    Progress,
    decode_outcome,
    decode_value,
    encode,
    now_ms,
)
from .errors import JobAborted, ResultTimeout, TaskFailed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._core.host import AppHandle

__all__ = ["Job", "JobInfo", "JobState", "JobUpdate", "gather"]

R = TypeVar("R", covariant=True)

log = logging.getLogger("aioq")


class JobInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a job's record.

    A job gets its record when it is sent: a queued job's info has its task,
    queue and ``enqueued_at`` (a ``scheduled`` one its ``due_at`` too). An id
    that never existed, or whose record expired after ``result_ttl``, also
    reads ``state=queued``, with every other field ``None`` (as does a job sent
    by a scheduler until a worker starts it).
    """

    id: str
    state: JobState
    task: str | None = None
    queue: str | None = None
    attempts: int = 0
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    due_at: datetime | None = None
    """When a ``scheduled`` or ``retrying`` job is due to (re)start."""
    progress: Progress | None = None
    """The task's last ``ctx.progress(...)`` report."""
    result: Any = None
    error: ErrorInfo | None = None
    """The error a failed job ended with, or the last error of a job being retried."""


class JobUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """One event of ``job.updates()``: the state, and the progress report if it is one."""

    state: JobState
    progress: Progress | None = None

    @property
    def is_final(self) -> bool:
        return self.state.is_final


def _when(ms: bytes | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


class Job(Generic[R]):
    """A handle on one job. Cheap to create; holds no connection of its own.

    Get one from ``task.kiq()``, ``app.send()``, or ``app.job(id)`` in any process.
    """

    __slots__ = ("_app", "_return_type", "id", "parent")

    def __init__(self, app: AppHandle, id: str, return_type: Any = Any) -> None:
        self._app = app
        self.id = id
        self._return_type = return_type
        self.parent: Any = None
        """In a workflow sent from this process: the handle of the step before this
        one (a ``Job`` or a ``GroupJob``), like Celery's ``AsyncResult.parent``."""

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result.

        No polling: the waiter is woken by the worker's notification.
        ``timeout`` is a deadline from the call: subscribing, connecting and
        reading count against it, so the call returns or raises within it (plus
        well under a second) even when Redis does not answer.

        Raises:
            TaskFailed: the task raised (``.type``, ``.message``, ``.traceback``).
            ResultTimeout: not finished within ``timeout`` seconds (a ``TimeoutError``).
            BrokerUnavailable: Redis could not be reached for ``operation_timeout``
                seconds (before the deadline).
        """
        try:
            payload = await self._app.broker.wait_outcome(self.id, timeout)
        except TimeoutError as exc:
            # The deadline passed, whatever the wait was doing then (subscribing,
            # reading, riding out an outage: the cause says which).
            raise ResultTimeout(
                f"job {self.id} did not finish within {timeout or 0:g}s"
            ) from exc.__cause__
        return self._unwrap(payload)

    def _unwrap(self, payload: bytes) -> R:
        outcome = decode_outcome(payload)
        if outcome.state == JobState.SUCCEEDED.value:
            if bytes(outcome.result) == bytes(NIL):
                return None  # type: ignore[return-value]  # the task does not store results
            value: R = decode_value(outcome.result, self._return_type)
            return value
        if outcome.state == JobState.ABORTED.value:
            raise JobAborted(f"job {self.id} was aborted")
        error = outcome.error or ErrorInfo("Error", f"job ended {outcome.state}")
        raise TaskFailed(error.type, error.message, error.traceback, job_id=self.id)

    async def abort(self) -> bool:
        """Abort the job: a queued or scheduled job never starts; a running async
        task is cancelled by its worker within about a second (a sync task's
        thread runs on, its result is dropped). ``result()`` then raises
        ``JobAborted``. A unique job's lock is released at once (an explicit
        ``job_id`` stays taken for ``result_ttl``, as after any end).

        Returns False, and changes nothing, when the job had already ended or
        there is no such job (an id never sent, or whose record expired): a job
        sent under that id later runs normally.
        """
        app = self._app
        now = now_ms()
        outcome = encode(Outcome(JobState.ABORTED.value, now))
        fallback_ms = int(app.result_ttl * 1000)
        done = await app.broker.abort(self.id, outcome, now, fallback_ms)
        if done is None:
            return False
        try:
            ttl_ms = done.result_ttl_ms
            if ttl_ms is None:  # a record its sender did not write (a scheduler's job)
                ttl_ms = fallback_ms
                if done.task is not None:
                    ttl_ms = int(app.options_for(done.task).result_ttl * 1000)
                if ttl_ms != fallback_ms:
                    await app.broker.expire_record(self.id, ttl_ms)
            if done.lock is not None and done.queue is not None:
                keep_ms = ttl_ms if done.lock == self.id else 0
                await app.broker.unlock(done.queue, done.lock, self.id, keep_ms)
        except Exception as exc:  # aborted all the same; the lock's own TTL ends it
            log.warning("job %s aborted, but its lock was not released: %s", self.id, exc)
        if app.events_maxlen and done.queue is not None:
            # the record is in the job's slot, the event in the queue's: right after
            note = Note("aborted", self.id, done.task or "", done.attempts)
            try:
                await app.broker.write_event(done.queue, note, app.events_maxlen, done.worker or "")
            except Exception as exc:  # aborted all the same
                log.warning("job %s aborted, but its event was not written: %s", self.id, exc)
        return True

    async def updates(self) -> AsyncIterator[JobUpdate]:
        """The job's state now, then each progress report as the task makes it,
        then its final state — pushed by the worker, never polled::

            async for update in job.updates():
                if update.progress:
                    bar.update(update.progress.current, update.progress.total)
            result = await job.result()
        """
        async for kind, data in self._app.broker.watch(self.id):
            if kind == "record":
                state = JobState(data.get(b"state", b"queued").decode())
                progress = (
                    decode_value(data[b"progress"], Progress) if b"progress" in data else None
                )
                yield JobUpdate(state=state, progress=progress)
            elif kind == "progress":
                yield JobUpdate(state=JobState.RUNNING, progress=decode_value(data, Progress))
            else:
                yield JobUpdate(state=JobState(decode_outcome(data).state))

    async def state(self) -> JobState:
        """The job's current state. ``queued`` also stands for an unknown id (never
        sent, or its record expired ``result_ttl`` after it ended)."""
        raw = await self._app.broker.job_state(self.id)
        return JobState(raw.decode()) if raw else JobState.QUEUED

    async def info(self) -> JobInfo:
        """A snapshot of the job's record: state, result or error, attempts, times, worker."""
        rec = await self._app.broker.job_record(self.id)
        if not rec:
            return JobInfo(id=self.id, state=JobState.QUEUED)
        result: Any = None
        error: ErrorInfo | None = None
        finished_at = None
        if b"outcome" in rec:
            outcome = decode_outcome(rec[b"outcome"])
            finished_at = _when(str(outcome.finished_ms).encode())
            error = outcome.error
            if bytes(outcome.result) != bytes(NIL):
                result = decode_value(outcome.result, self._return_type)
        elif b"error" in rec:  # the last failed attempt of a job being retried
            error = decode_value(rec[b"error"], ErrorInfo)
        worker = rec.get(b"worker")
        return JobInfo(
            id=self.id,
            state=JobState(rec.get(b"state", b"queued").decode()),
            task=rec[b"task"].decode() if b"task" in rec else None,
            queue=rec[b"queue"].decode() if b"queue" in rec else None,
            attempts=int(rec.get(b"attempts", 0)),
            enqueued_at=_when(rec.get(b"enqueued_ms")),
            started_at=_when(rec.get(b"started_ms")),
            finished_at=finished_at,
            worker=worker.decode() if worker else None,
            due_at=_when(rec.get(b"due_ms")),
            progress=decode_value(rec[b"progress"], Progress) if b"progress" in rec else None,
            result=result,
            error=error,
        )


async def gather(*jobs: Job[Any], timeout: float | None = None) -> list[Any]:
    """Wait for every job and return their results in order (like ``asyncio.gather``;
    the first failure is raised). All waits share the client's one pub/sub
    connection and batched reads."""
    return list(await asyncio.gather(*(job.result(timeout) for job in jobs)))
