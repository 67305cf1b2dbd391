"""Reading and removing workers' registry entries (the heartbeat thread writes
them: ``leases.Registration``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._core.status import WorkerStatus
from .cluster import execute_pipeline
from .connection import bounded

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from .keys import Keyspace


async def forget_worker(redis: Redis, keys: Keyspace, worker_id: str) -> None:
    """A worker stops cleanly: its entry goes at once (else it expires)."""
    pipe = redis.pipeline(transaction=False)
    pipe.delete(keys.worker(worker_id))
    pipe.srem(keys.workers(), worker_id)
    async with bounded():
        await execute_pipeline(pipe)


async def prune(redis: Redis, keys: Keyspace) -> None:
    """Drop the ids of workers whose entry expired (killed ones) from the index:
    every worker does it once at start, so the set never outgrows the fleet."""
    async with bounded():
        ids = list(await redis.smembers(keys.workers()))
        if not ids:
            return
        pipe = redis.pipeline(transaction=False)
        for worker_id in ids:
            pipe.exists(keys.worker(_text(worker_id)))
        alive = await execute_pipeline(pipe)
        gone = [i for i, there in zip(ids, alive, strict=True) if not there]
        if gone:
            await redis.srem(keys.workers(), *gone)


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


async def live_workers(redis: Redis, keys: Keyspace) -> list[WorkerStatus]:
    """Every worker whose entry has not expired, oldest first (two round trips).
    Ids whose entry expired (a worker that died) are pruned from the index."""
    async with bounded():
        ids = sorted(_text(i) for i in await redis.smembers(keys.workers()))
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hgetall(keys.worker(worker_id))
        pipe.pttl(keys.worker(worker_id))
    async with bounded():
        replies = await execute_pipeline(pipe, raise_on_error=False)
    out: list[WorkerStatus] = []
    gone: list[str] = []
    for n, worker_id in enumerate(ids):
        fields, pttl = replies[2 * n], replies[2 * n + 1]
        if isinstance(fields, Exception) or isinstance(pttl, Exception):
            continue
        if not fields:
            gone.append(worker_id)
            continue
        f = {_text(k): v for k, v in fields.items()}
        ttl_ms = _int(f.get("ttl_ms"))
        started = _int(f.get("started_ms"))
        queues = _text(f.get("queues"))
        out.append(
            WorkerStatus(
                id=worker_id,
                host=_text(f.get("host")),
                pid=_int(f.get("pid")),
                queues=[q for q in queues.split(",") if q],
                concurrency=_int(f.get("concurrency")),
                running=_int(f.get("running")),
                processed=_int(f.get("processed")),
                failed=_int(f.get("failed")),
                started_at=datetime.fromtimestamp(started / 1000, tz=UTC) if started else None,
                last_seen_s=max(0.0, (ttl_ms - int(pttl)) / 1000) if int(pttl) >= 0 else 0.0,
                version=_text(f.get("version")),
            )
        )
    if gone:
        async with bounded():
            await redis.srem(keys.workers(), *gone)
    out.sort(key=lambda w: (w.started_at or datetime.min.replace(tzinfo=UTC), w.id))
    return out
