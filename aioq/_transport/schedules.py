"""Periodic schedules in Redis: claiming and sending a tick, reading what fired last.

Each schedule has one state hash (``Keyspace.schedule``) in the slot of the
queue its jobs go to, so ``tick.lua`` can compare-and-set the last fire time
and XADD the job in one atomic step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .connection import bounded
from .scripts import SCRIPTS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from .keys import Keyspace

__all__ = ["State", "fire", "states"]


class State(NamedTuple):
    """What a schedule's state hash remembers."""

    last_ms: int
    """The last tick fired (ms since the epoch)."""
    last_job: str
    """The job id sent for it."""
    fired_ms: int | None
    """The wall clock of the scheduler that sent it, when it did."""


async def fire(
    redis: Redis,
    keys: Keyspace,
    queue: str,
    level: int,
    name: str,
    tick_ms: int,
    job_id: str,
    payload: bytes,
    now_ms: int,
) -> tuple[bool, int]:
    """Send ``payload`` for tick ``tick_ms`` of schedule ``name`` unless that tick, or
    a later one, was fired already. Returns (sent, last tick fired)."""
    sent, last = await SCRIPTS.call(
        redis,
        "tick",
        [keys.schedule(queue, name), keys.stream(queue, level)],
        [tick_ms, job_id, payload, now_ms],
    )
    return bool(sent), int(last)


async def states(
    redis: Redis, keys: Keyspace, schedules: Sequence[tuple[str, str]]
) -> list[State | None]:
    """The state of each (queue, schedule name), in one pipeline; None for a schedule
    that never fired."""
    pipe = redis.pipeline(transaction=False)
    for queue, name in schedules:
        pipe.hmget(keys.schedule(queue, name), ["last_ms", "last_job", "fired_ms"])
    async with bounded():
        replies = await pipe.execute()
    out: list[State | None] = []
    for last_ms, last_job, fired_ms in replies:
        if last_ms is None:
            out.append(None)
            continue
        out.append(
            State(
                int(last_ms),
                last_job.decode() if isinstance(last_job, bytes) else str(last_job or ""),
                int(fired_ms) if fired_ms is not None else None,
            )
        )
    return out
