"""Seeing a running system: ``App.status()``, ``App.workers()``, ``App.jobs()``
and ``App.purge()`` (which the CLI's ``aioq status|workers|jobs|purge`` print).

Everything is read from what Redis already keeps plus each worker's registry
entry (written by its heartbeat thread with counters kept in memory): nothing
here costs the workers a write per task.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from ._core.status import JOB_STATES, JobSummary, LevelStatus, QueueStatus, Status, WorkerStatus
from ._transport.connection import broker_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._core.host import AppHandle

__all__ = ["JobSummary", "LevelStatus", "QueueStatus", "Status", "WorkerStatus"]

ABORT_CHUNK = 500


def _queues(
    app: AppHandle, workers: Sequence[WorkerStatus], wanted: Sequence[str] | None
) -> list[str]:
    if wanted:
        return list(dict.fromkeys(wanted))
    found = set(app.queues())
    for worker in workers:
        found.update(worker.queues)
    return sorted(found)


async def _status(app: AppHandle, queues: Sequence[str] | None) -> Status:
    workers = await app.broker.live_workers()
    rows, at = await app.broker.queue_status(_queues(app, workers, queues))
    return Status(queues=rows, workers=workers, at=datetime.fromtimestamp(at / 1000, tz=UTC))


async def _workers(app: AppHandle) -> list[WorkerStatus]:
    return await app.broker.live_workers()


async def _jobs(app: AppHandle, state: str, queue: str | None, limit: int) -> list[JobSummary]:
    if state not in JOB_STATES:
        raise ValueError(f"state must be one of {', '.join(JOB_STATES)}, not {state!r}")
    broker = app.broker
    if queue:
        known = [queue]
    else:
        known = _queues(app, await broker.live_workers(), None)
        if state == "failed":  # also queues no worker reads now (a SCAN, like `aioq dead list`)
            known = sorted({*known, *await broker.dead_queues()})
    return await broker.list_jobs(state, known, max(0, limit))


async def _purge(app: AppHandle, queue: str) -> int:
    """Drop ``queue``'s ready messages; their jobs' records end ``aborted`` (so
    waiters get ``JobAborted`` and unique locks are released, as ``Job.abort()``)."""
    dropped = await app.broker.purge_ready(queue)
    ids = [job_id for job_id, _ in dropped if job_id]
    for i in range(0, len(ids), ABORT_CHUNK):
        await asyncio.gather(*(app.job(job_id).abort() for job_id in ids[i : i + ABORT_CHUNK]))
    return len(dropped)


class Operations:
    """``App``'s side of the read model (a base class of it)."""

    url: str

    async def status(self, queues: Sequence[str] | None = None) -> Status:
        """Queues (ready, scheduled, running, retrying, dead, oldest ready age,
        consumers; per priority level where it has messages) and live workers.

        ``queues``: default, the app's queues and every queue a live worker reads.
        A few pipelined reads of what Redis keeps; nothing is written (but the
        ids of workers whose registry entry expired are pruned).
        """
        async with broker_errors(self.url):
            return await _status(cast("AppHandle", self), queues)

    async def workers(self) -> list[WorkerStatus]:
        """Live workers (their heartbeat wrote their registry entry lately)."""
        async with broker_errors(self.url):
            return await _workers(cast("AppHandle", self))

    async def jobs(
        self, state: str = "running", *, queue: str | None = None, limit: int = 100
    ) -> list[JobSummary]:
        """Jobs that are ``running`` (taken by a worker, not acked), ``queued``
        (ready, not taken), ``scheduled`` / ``retrying`` (in the delayed sets) or
        ``failed`` (dead letters): ids, task, argument preview, attempts, times.
        Most urgent priority level first."""
        async with broker_errors(self.url):
            return await _jobs(cast("AppHandle", self), state, queue, limit)

    async def purge(self, queue: str) -> int:
        """Drop the ready messages of ``queue`` that no worker has taken (running
        jobs, delayed and dead messages are untouched); their jobs end ``aborted``.
        Returns how many were dropped."""
        async with broker_errors(self.url):
            return await _purge(cast("AppHandle", self), queue)
