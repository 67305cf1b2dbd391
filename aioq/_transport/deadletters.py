"""Reading, re-driving and purging dead-letter streams."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from .cluster import execute_pipeline
from .connection import bounded
from .scripts import SCRIPTS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from .keys import Keyspace

CHUNK = 500


async def dead_queues(redis: Redis, keys: Keyspace) -> list[str]:
    """Queues that have a dead-letter stream."""
    prefix = f"{keys.prefix}:{{"
    found = set()
    async with bounded(60):
        async for key in redis.scan_iter(match=f"{keys.prefix}:{{*}}:dead", count=1000):
            name = key.decode() if isinstance(key, bytes) else key
            found.add(name[len(prefix) : -len("}:dead")])
    return sorted(found)


async def read(
    redis: Redis, keys: Keyspace, queue: str, limit: int | None, start: bytes | str = "-"
) -> list[tuple[bytes, dict[bytes, bytes]]]:
    async with bounded():
        rows = await redis.xrange(keys.dead(queue), min=start, max="+", count=limit)
    return cast("list[tuple[bytes, dict[bytes, bytes]]]", list(rows or []))


async def redrive(redis: Redis, keys: Keyspace, queue: str, ids: Sequence[bytes | str]) -> int:
    moved = 0
    for i in range(0, len(ids), CHUNK):
        moved += int(
            await SCRIPTS.call(
                redis,
                "redrive",
                [keys.dead(queue), *keys.level_streams(queue)],
                list(ids[i : i + CHUNK]),
            )
        )
    return moved


async def requeue_jobs(
    redis: Redis, keys: Keyspace, jobs: Sequence[tuple[str, str, str]], ttl_ms: int
) -> None:
    """Replace the records of (job id, task, queue) with fresh ``queued`` ones, so
    re-driven messages run again (a failed record would make the worker skip them
    as finished) and can be aborted before they start. Written before the
    messages go back, so no worker can have started them."""
    now = await redis.time()
    enqueued_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    for i in range(0, len(jobs), CHUNK):
        pipe = redis.pipeline(transaction=False)
        for job_id, task, queue in jobs[i : i + CHUNK]:
            key = keys.job(job_id)
            pipe.delete(key)
            pipe.hset(
                key,
                mapping={
                    "state": "queued",
                    "task": task,
                    "queue": queue,
                    "enqueued_ms": enqueued_ms,
                    "result_ttl_ms": ttl_ms,
                },
            )
            pipe.pexpire(key, ttl_ms)
        async with bounded():
            await execute_pipeline(pipe)


async def purge(redis: Redis, keys: Keyspace, queue: str) -> int:
    dead = keys.dead(queue)
    pipe = redis.pipeline(transaction=False)
    pipe.xlen(dead)
    pipe.delete(dead)
    async with bounded():
        count, _ = await execute_pipeline(pipe)
    return int(count)
