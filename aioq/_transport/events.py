"""Lifecycle events in Redis: one capped stream per queue (``Keyspace.events``).

Events are written by the scripts that make each transition, in the queue's
slot (``lua/include/event.lua``: ``start_many``, ``complete``, ``retry``,
``dead``); where a transition's own script writes a job record (another Cluster
slot) instead — a progress report, an abort, a start or an outcome on the
per-job path — ``event.lua`` writes it in the same pipeline, or right after the
confirmed write. Readers merge the queues' streams by entry id (Redis time).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from .cluster import by_slot, is_cluster
from .connection import OPERATION_TIMEOUT, bounded
from .keys import GROUP
from .scripts import SCRIPTS

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from .._core.event import Note
    from .keys import Keyspace
    from .scripts import Commands
    from .types import Entry

__all__ = ["event_queues", "queue_event", "read", "write"]


def queue_event(
    pipe: Pipeline | Commands,
    keys: Keyspace,
    maxlen: int,
    queue: str,
    note: Note,
    worker: str,
    fence: Entry | None = None,
) -> None:
    """Append one ``event.lua`` call to ``pipe``; with ``fence``, written only
    while ``worker`` still holds that delivery."""
    args: list[Any] = [maxlen, note.kind, note.job_id, note.task, worker, note.attempt]
    args.append(note.detail)
    if fence is None:
        SCRIPTS.queue(pipe, "event", [keys.events(queue)], args)
    else:
        fenced = [*args, GROUP, fence.id, fence.deliveries]
        SCRIPTS.queue(pipe, "event", [keys.events(queue), fence.stream], fenced)


async def write(
    redis: Redis, keys: Keyspace, maxlen: int, queue: str, note: Note, worker: str
) -> None:
    """Write one event (event.lua) for a transition already made."""
    args = [maxlen, note.kind, note.job_id, note.task, worker, note.attempt, note.detail]
    await SCRIPTS.call(redis, "event", [keys.events(queue)], args)


async def read(
    redis: Redis,
    keys: Keyspace,
    after: dict[str, str],
    count: int,
    block_ms: int | None,
    cluster: bool = False,
) -> list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """Entries after each queue's id (queue → id), at most ``count`` per queue,
    waiting up to ``block_ms`` for one when there are none (None: no wait).

    One XREAD over every queue's stream on a single node. On a Redis Cluster the
    streams live in their queues' slots: one XREAD per slot group, and a wait is
    rounds of those every ``CLUSTER_POLL`` seconds (a tail, not a hot path)."""
    streams = {keys.events(q): last for q, last in after.items()}
    queue_of = {keys.events(q): q for q in after}
    reply: Any
    if cluster or is_cluster(redis):
        reply = await _read_per_slot(redis, streams, count, block_ms)
    else:
        timeout = OPERATION_TIMEOUT + (block_ms or 0) / 1000
        async with bounded(timeout):
            reply = await redis.xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
    out = []
    for stream, items in reply or ():
        key = stream.decode() if isinstance(stream, bytes) else stream
        out.append((queue_of[key], [(entry_id, fields or {}) for entry_id, fields in items]))
    return out


CLUSTER_POLL = 0.2
"""Seconds between two rounds of per-slot reads while a cluster tail waits."""


async def _read_per_slot(
    redis: Redis, streams: dict[str, str], count: int, block_ms: int | None
) -> list[Any]:
    deadline = time.monotonic() + (block_ms or 0) / 1000
    while True:
        reply: list[Any] = []
        for group in by_slot(streams):
            async with bounded():
                got: Any = await redis.xread({k: streams[k] for k in group}, count=count)
            reply.extend(got or ())
        if reply or block_ms is None or time.monotonic() >= deadline:
            return reply
        await anyio.sleep(min(CLUSTER_POLL, max(0.0, deadline - time.monotonic())))


async def event_queues(redis: Redis, keys: Keyspace) -> list[str]:
    """Queues that have an event stream (a SCAN, like ``dead_queues``)."""
    prefix = f"{keys.prefix}:{{"
    found = set()
    async with bounded(60):
        async for key in redis.scan_iter(match=f"{keys.prefix}:{{*}}:events", count=1000):
            name = key.decode() if isinstance(key, bytes) else key
            found.add(name[len(prefix) : -len("}:events")])
    return sorted(found)
