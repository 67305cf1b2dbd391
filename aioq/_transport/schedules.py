"""Periodic schedules in Redis: claiming and sending a tick, reading what fired last,
pausing and resuming, and the schedules added at run time.

Each schedule has one state hash (``Keyspace.schedule``) in the slot of the
queue its jobs go to, so ``tick.lua`` can compare-and-set the last fire time
and XADD the job in one atomic step, and check that the schedule is not paused
in the same step. Schedules added at run time are kept in one hash
(``Keyspace.runtime_schedules``: name → msgpack definition) that every
scheduler reads now and then; it is never written together with a state hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cluster import execute_pipeline
from .connection import bounded
from .scripts import SCRIPTS
from .types import Fired, ScheduleState, TickCode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from .keys import Keyspace

__all__ = ["definitions", "fire", "forget", "pause", "put", "record", "redis_time", "states"]


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
    code = TickCode(int(status))
    return Fired(code == TickCode.SENT, int(value), code == TickCode.EARLY, code == TickCode.PAUSED)


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
    that has none (never fired, never paused)."""
    fields = ["last_ms", "last_job", "fired_ms", "paused", "resumed_ms"]
    pipe = redis.pipeline(transaction=False)
    for queue, name in schedules:
        pipe.hmget(keys.schedule(queue, name), fields)
    async with bounded():
        replies = await execute_pipeline(pipe)
    out: list[ScheduleState | None] = []
    for last_ms, last_job, fired_ms, paused, resumed_ms in replies:
        if last_ms is None and paused is None and resumed_ms is None:
            out.append(None)
            continue
        out.append(
            ScheduleState(
                int(last_ms) if last_ms is not None else None,
                last_job.decode() if isinstance(last_job, bytes) else str(last_job or ""),
                int(fired_ms) if fired_ms is not None else None,
                paused is not None,
                int(resumed_ms) if resumed_ms is not None else None,
            )
        )
    return out


async def pause(redis: Redis, keys: Keyspace, queue: str, name: str, resume: bool) -> bool:
    """Pause (or resume) schedule ``name`` whose jobs go to ``queue`` (pause.lua);
    False when it already was."""
    action = "resume" if resume else "pause"
    async with bounded():
        done = await SCRIPTS.call(redis, "pause", [keys.schedule(queue, name)], [action])
    return bool(done)


async def definitions(redis: Redis, keys: Keyspace) -> dict[str, bytes]:
    """The schedules added at run time: name → encoded definition."""
    async with bounded():
        found = await redis.hgetall(keys.runtime_schedules())
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): v if isinstance(v, bytes) else v.encode()
        for k, v in found.items()
    }


async def put(redis: Redis, keys: Keyspace, name: str, definition: bytes) -> None:
    """Add (or replace) a run-time schedule's definition."""
    async with bounded():
        await redis.hset(keys.runtime_schedules(), name, definition)


async def forget(redis: Redis, keys: Keyspace, name: str) -> bool:
    """Remove a run-time schedule's definition; False when there was none."""
    async with bounded():
        return bool(await redis.hdel(keys.runtime_schedules(), name))
