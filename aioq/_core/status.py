"""The read model of a running system: what ``App.status()`` and ``App.jobs()``
return (and the CLI prints). Plain msgspec Structs, built by the transport from
what Redis keeps; no I/O here."""

from __future__ import annotations

from datetime import datetime  # msgspec needs it at runtime

import msgspec

__all__ = ["JobSummary", "LevelStatus", "QueueStatus", "Status", "WorkerStatus", "summed"]

JOB_STATES = ("running", "queued", "scheduled", "retrying", "failed")
"""What ``App.jobs(state=…)`` lists."""


class LevelStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One priority level of a queue (listed only where it has messages)."""

    priority: int
    ready: int = 0
    scheduled: int = 0
    running: int = 0
    retrying: int = 0
    oldest_ready_age_s: float | None = None


class QueueStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One queue, all priority levels together (``levels``: each one apart)."""

    name: str
    ready: int = 0
    """Messages no worker has taken yet."""
    scheduled: int = 0
    """Waiting for their time in the delayed sets (delays, limit deferrals)."""
    running: int = 0
    """Taken by a worker and not acked yet (the consumer groups' pending entries)."""
    retrying: int = 0
    """Waiting in the delayed sets for a retry after a failed attempt."""
    dead: int = 0
    """Dead letters."""
    oldest_ready_age_s: float | None = None
    """Age of the oldest ready message, by Redis' clock (None when none is ready)."""
    consumers: int = 0
    """Consumers of the queue's group (a dead worker's stay until the sweep removes them)."""
    levels: list[LevelStatus] = []
    delivered: int = 0
    """Messages handed to workers since the queue's groups were made (XINFO GROUPS'
    ``entries-read``, all levels; a retry counts again): its rate of change is the
    queue's throughput."""
    partitions: list[QueueStatus] = []
    """A partitioned queue's partitions, each as a queue of its own (``hot#0``, …);
    the counts above are their sums (``consumers``: the most any partition has,
    ``oldest_ready_age_s``: the oldest of all). Empty for a plain queue."""


def summed(name: str, parts: list[QueueStatus]) -> QueueStatus:
    """The row of a logical queue from its partitions' rows."""
    levels: dict[int, list[LevelStatus]] = {}
    for part in parts:
        for lv in part.levels or _only_level(part):
            levels.setdefault(lv.priority, []).append(lv)
    merged = [_summed_level(n, levels[n]) for n in sorted(levels)]
    ages = [p.oldest_ready_age_s for p in parts if p.oldest_ready_age_s is not None]
    return QueueStatus(
        name=name,
        ready=sum(p.ready for p in parts),
        scheduled=sum(p.scheduled for p in parts),
        running=sum(p.running for p in parts),
        retrying=sum(p.retrying for p in parts),
        dead=sum(p.dead for p in parts),
        oldest_ready_age_s=max(ages) if ages else None,
        consumers=max((p.consumers for p in parts), default=0),
        levels=merged if len(merged) > 1 or (merged and merged[0].priority) else [],
        delivered=sum(p.delivered for p in parts),
        partitions=parts,
    )


def _only_level(part: QueueStatus) -> list[LevelStatus]:
    """A queue listed without levels has messages of priority 0 only (or none)."""
    if not (part.ready or part.scheduled or part.running or part.retrying):
        return []
    return [
        LevelStatus(
            priority=0,
            ready=part.ready,
            scheduled=part.scheduled,
            running=part.running,
            retrying=part.retrying,
            oldest_ready_age_s=part.oldest_ready_age_s,
        )
    ]


def _summed_level(priority: int, rows: list[LevelStatus]) -> LevelStatus:
    ages = [r.oldest_ready_age_s for r in rows if r.oldest_ready_age_s is not None]
    return LevelStatus(
        priority=priority,
        ready=sum(r.ready for r in rows),
        scheduled=sum(r.scheduled for r in rows),
        running=sum(r.running for r in rows),
        retrying=sum(r.retrying for r in rows),
        oldest_ready_age_s=max(ages) if ages else None,
    )


class WorkerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One live worker process, from its registry entry."""

    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    running: int
    processed: int
    """Attempts that ran to an outcome in it (succeeded, failed or retried)."""
    failed: int
    """…of which raised."""
    started_at: datetime | None
    last_seen_s: float
    """Seconds since its heartbeat last wrote the entry (Redis' clock)."""
    version: str


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """Queues and live workers at one moment."""

    queues: list[QueueStatus]
    workers: list[WorkerStatus]
    at: datetime
    """When it was read, by Redis' clock."""


class JobSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One job as ``App.jobs()`` lists it."""

    id: str | None
    """The job id (None for an undecodable dead letter)."""
    state: str
    """running | queued | scheduled | retrying | failed."""
    queue: str
    task: str | None
    args: str
    """A short preview of the arguments."""
    priority: int = 0
    attempts: int = 0
    """Attempts started so far (from the record; 0 when it has none)."""
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    due_at: datetime | None = None
    worker: str | None = None
    """The consumer holding it (running)."""
    deliveries: int = 0
    """Times its stream entry was delivered (running)."""
    entry: str | None = None
    """Its stream, dead-letter or delayed-set entry id."""
    reason: str | None = None
    """Why it was dead-lettered (failed)."""
