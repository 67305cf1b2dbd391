"""Seeing a running system: ``App.status()``, ``App.workers()``, ``App.jobs()``
and ``App.purge()`` (which the CLI's ``aioq status|workers|jobs|purge`` print).

Everything is read from what Redis already keeps plus each worker's registry
entry (written by its heartbeat thread with counters kept in memory): nothing
here costs the workers a write per task.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

import msgspec

from ._core.canvas import ChainNode, GroupNode, Node, TaskNode
from ._core.status import (
    JOB_STATES,
    JobSummary,
    LevelStatus,
    QueueStatus,
    Status,
    WorkerStatus,
    summed,
)
from ._transport.connection import broker_errors
from .job import JobInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._core.host import AppHandle
    from ._core.message import Message
    from .schedules import Schedules

__all__ = [
    "JobDetail",
    "JobSummary",
    "LevelStatus",
    "QueueStatus",
    "Status",
    "TimelineEntry",
    "WorkerStatus",
]

ABORT_CHUNK = 500


def _queues(
    app: AppHandle, workers: Sequence[WorkerStatus], wanted: Sequence[str] | None
) -> list[str]:
    """The queues to report (logical names: a worker's partitions count as their queue)."""
    if wanted:
        return list(dict.fromkeys(wanted))
    found = set(app.queues())
    for worker in workers:
        found.update(app.partitions.logical(q) for q in worker.queues)
    return sorted(found)


async def _status(app: AppHandle, queues: Sequence[str] | None) -> Status:
    workers = await app.broker.live_workers()
    wanted = _queues(app, workers, queues)
    rows, at = await app.broker.queue_status(app.partitions.expand(wanted))
    by_name = {row.name: row for row in rows}
    report = []
    for name in wanted:  # a partitioned queue: the sum, with each partition
        names = app.partitions.names(name)
        if names == [name]:
            report.append(by_name[name])
        else:
            report.append(summed(name, [by_name[n] for n in names]))
    return Status(queues=report, workers=workers, at=datetime.fromtimestamp(at / 1000, tz=UTC))


async def _workers(app: AppHandle) -> list[WorkerStatus]:
    return await app.broker.live_workers()


async def _jobs(app: AppHandle, state: str, queue: str | None, limit: int) -> list[JobSummary]:
    if state not in JOB_STATES:
        raise ValueError(f"state must be one of {', '.join(JOB_STATES)}, not {state!r}")
    broker = app.broker
    if queue:
        known = app.partitions.names(queue)
    else:
        known = app.partitions.expand(_queues(app, await broker.live_workers(), None))
        if state == "failed":  # also queues no worker reads now (a SCAN, like `aioq dead list`)
            known = sorted({*known, *await broker.dead_queues()})
    return await broker.list_jobs(state, known, max(0, limit))


async def _purge(app: AppHandle, queue: str) -> int:
    """Drop ``queue``'s ready messages (of every partition); their jobs' records end
    ``aborted`` (so waiters get ``JobAborted`` and unique locks are released, as
    ``Job.abort()``)."""
    dropped = []
    for name in app.partitions.names(queue):
        dropped.extend(await app.broker.purge_ready(name))
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
        A partitioned queue is one row, the sum of its partitions, with each
        partition in its ``partitions`` (ask for ``hot#3`` to get one alone).
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
        """Drop the ready messages of ``queue`` (every partition of a partitioned
        one) that no worker has taken (running jobs, delayed and dead messages are
        untouched); their jobs end ``aborted``.
        Returns how many were dropped."""
        async with broker_errors(self.url):
            return await _purge(cast("AppHandle", self), queue)


# -- one job in full, and the schedules (what the dashboard shows) -------------------


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One moment of a job's life, as far as its record and message tell."""

    at: datetime
    what: str
    """enqueued | due | started | progress | finished | dead-lettered."""
    detail: str = ""


class JobDetail(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about one job: its record (``info``) and, while its message
    still exists (queued, scheduled, running, retrying or dead-lettered), the call
    itself and where it goes next in a workflow. A finished job's message is
    deleted when acked: only its record (result or error, times) is left."""

    info: JobInfo
    known: bool
    """The job has a record (False: never sent, or its record expired)."""
    place: str | None = None
    """Where its message is: ``stream`` (ready or running), ``delayed``, ``dead``."""
    entry: str | None = None
    """Its stream or dead-letter entry id (what ``retry_dead`` takes)."""
    args: list[Any] | None = None
    """The call's arguments (None: the message is gone)."""
    kwargs: dict[str, Any] | None = None
    priority: int | None = None
    retry: int = 0
    """Retries before the message that is queued now."""
    dead_reason: str | None = None
    next: list[str] = []
    """Ids of the workflow jobs that follow this one (a chain's next step, a group's
    members, or what follows the group it is a member of)."""
    group: str | None = None
    """The group barrier it reports its result to."""
    on_error: str | None = None
    """The task a workflow calls when it fails."""
    timeline: list[TimelineEntry] = []


def _heads(node: Node) -> list[str]:
    """The job ids that start ``node``."""
    if isinstance(node, TaskNode):
        return [node.job_id]
    if isinstance(node, GroupNode):
        return [job for member in node.members for job in _heads(member)]
    assert isinstance(node, ChainNode)
    return _heads(node.steps[0]) if node.steps else []


def _ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _timeline(info: JobInfo, msg: Message | None, dead_at: datetime | None) -> list[TimelineEntry]:
    moments: list[tuple[datetime | None, str, str]] = [
        (info.enqueued_at or (_ms(msg.enqueued_ms) if msg else None), "enqueued", ""),
        (info.due_at, "due", ""),
        (info.started_at, "started", f"attempt {info.attempts}" if info.attempts else ""),
        (dead_at, "dead-lettered", ""),
        (info.finished_at, "finished", info.state.value),
    ]
    if info.progress is not None and info.progress.at_ms:
        p = info.progress
        of = f" of {p.total:g}" if p.total is not None else ""
        moments.append((_ms(p.at_ms), "progress", f"{p.current:g}{of}"))
    found = [TimelineEntry(at=at, what=what, detail=d) for at, what, d in moments if at]
    return sorted(found, key=lambda e: e.at)


async def _job_detail(app: AppHandle, job_id: str) -> JobDetail:
    info = await app.job(job_id).info()
    known = not (info.task is None and info.enqueued_at is None and info.attempts == 0)
    found = None
    if info.queue is not None:
        found = await app.broker.find_message(info.queue, job_id)
    if found is None:
        return JobDetail(info=info, known=known, timeline=_timeline(info, None, None))
    msg, cont = found.message, found.message.cont
    after = cont.then if cont and cont.then else []
    if not after and cont and cont.join:
        after = cont.join.outer.then
    return JobDetail(
        info=info,
        known=known,
        place=found.place,
        entry=found.entry,
        args=list(msg.args),
        kwargs=dict(msg.kwargs),
        priority=msg.priority,
        retry=msg.retry,
        dead_reason=found.reason,
        next=_heads(after[0]) if after else [],
        group=cont.join.barrier if cont and cont.join else None,
        on_error=cont.on_error.task if cont and cont.on_error else None,
        timeline=_timeline(info, msg, _ms(found.dead_at_ms)),
    )


async def job_detail(app: AppHandle, job_id: str) -> JobDetail:
    """Everything about one job (``JobDetail``): its record, plus its message while
    it exists (found among the first ``inspect.FIND_MAX`` entries of each of its
    queue's streams, delayed sets and dead letters, in one round trip)."""
    async with broker_errors(app.url):
        return await _job_detail(app, job_id)


async def schedule_overview(app: Scheduled) -> list[dict[str, str]]:
    """The app's schedules as ``aioq schedule list`` shows them (``app.schedules.list()``):
    name, task, spec, queue, source (code / runtime), state (active / paused), next
    run, last run, last job (times in each schedule's time zone, '-' for none)."""
    from ._worker.scheduler import stamp

    found = await app.schedules.list()

    def at(when: datetime | None, tz: str) -> str:
        return stamp(round(when.timestamp() * 1000), tz) if when is not None else "-"

    return [
        {
            "name": s.name,
            "task": s.task,
            "spec": s.spec,
            "queue": s.queue,
            "source": s.source,
            "state": "paused" if s.paused else "active",
            "next_run": at(s.next_run, s.tz),
            "last_run": at(s.last_run, s.tz),
            "last_job": s.last_job or "-",
        }
        for s in found
    ]


class Scheduled(Protocol):
    """An app with run-time schedules (``App``)."""

    @property
    def schedules(self) -> Schedules: ...
