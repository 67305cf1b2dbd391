"""Periodic schedules in Redis: claiming and sending a tick, reading what fired last.

Each schedule has one state hash (``Keyspace.schedule``) in the slot of the
queue its jobs go to, so ``tick.lua`` can compare-and-set the last fire time
and XADD the job in one atomic step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .connection import bounded
from .scripts import SCRIPTS
from .types import Fired, ScheduleState, TickCode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from .keys import Keyspace

__all__ = ["fire", "record", "redis_time", "states"]


async def fire(
    redis: Redis,
    keys: Keyspace,
    queue: str,
    level: int,
    name: str,
    tick_ms: int,
    job_id: str,
    payload: bytes,
    grace_ms: int,
) -> Fired:
    """Send ``payload`` for tick ``tick_ms`` of schedule ``name`` unless that tick, or
    a later one, was fired already, or the tick is more than ``grace_ms`` ahead of
    Redis time (all judged by the Redis clock, see tick.lua)."""
    status, value = await SCRIPTS.call(
        redis,
        "tick",
        [keys.schedule(queue, name), keys.stream(queue, level)],
        [tick_ms, job_id, payload, grace_ms],
    )
    return Fired(int(status) == TickCode.SENT, int(value), int(status) == TickCode.EARLY)


async def record(
    redis: Redis, keys: Keyspace, job_id: str, task: str, queue: str, ttl_ms: int
) -> None:
    """Give a tick's job its ``queued`` record, so it can be aborted before it
    starts (create-if-absent: a worker may have started it already)."""
    await SCRIPTS.call(
        redis,
        "enqueue_record",
        [keys.job(job_id)],
        [task, queue, await redis_time(redis), ttl_ms, "", "", 0],
    )


async def redis_time(redis: Redis) -> int:
    """The Redis server's clock (TIME), in ms since the epoch."""
    async with bounded():
        seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def states(
    redis: Redis, keys: Keyspace, schedules: Sequence[tuple[str, str]]
) -> list[ScheduleState | None]:
    """The state of each (queue, schedule name), in one pipeline; None for a schedule
    that never fired."""
    pipe = redis.pipeline(transaction=False)
    for queue, name in schedules:
        pipe.hmget(keys.schedule(queue, name), ["last_ms", "last_job", "fired_ms"])
    async with bounded():
        replies = await pipe.execute()
    out: list[ScheduleState | None] = []
    for last_ms, last_job, fired_ms in replies:
        if last_ms is None:
            out.append(None)
            continue
        out.append(
            ScheduleState(
                int(last_ms),
                last_job.decode() if isinstance(last_job, bytes) else str(last_job or ""),
                int(fired_ms) if fired_ms is not None else None,
            )
        )
    return out
