"""Redis CPU time per task, on one Redis server or a Redis Cluster.

    python benchmarks/redis_cpu.py redis://127.0.0.1:6379/0 [N]
    python benchmarks/redis_cpu.py redis+cluster://127.0.0.1:7000 [N]

Sends N no-op jobs (``kiq_many``), drains them with one in-process worker
(concurrency 100), and prints the Redis CPU (``used_cpu_user`` + ``used_cpu_sys``
from INFO, summed over every primary of a cluster) spent per task, in µs: the
whole life of a job (record, message, start, outcome, ack, result wait).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aredis

import aioq

T = TypeVar("T")


async def _cpu(url: str) -> float:
    """Seconds of CPU used so far by the server, or by every primary of a cluster."""
    if "+cluster://" in url:
        client = aredis.RedisCluster.from_url("redis://" + url.split("://", 1)[1])
        try:
            infos = await client.info("cpu", target_nodes=aredis.RedisCluster.PRIMARIES)
        finally:
            await client.aclose()
        rows = list(infos.values())
    else:
        single = aredis.Redis.from_url(url)
        try:
            rows = [await single.info("cpu")]
        finally:
            await single.aclose()
    return sum(float(r["used_cpu_user"]) + float(r["used_cpu_sys"]) for r in rows)


async def drain_noops(url: str, n: int, measure: Callable[[], Awaitable[T]]) -> tuple[float, T, T]:
    """Send ``n`` no-ops with ``kiq_many`` and drain them with one in-process worker
    (concurrency 100, burst) until every result is in: the seconds it took, and
    ``measure()`` just before the sends and just after the last result."""
    app = aioq.App(url, prefix=f"bench-{uuid.uuid4().hex[:8]}")

    @app.task
    async def noop() -> None:
        return None

    worker = aioq.Worker(app, concurrency=100, burst=True, block=0.1)
    try:
        before = await measure()
        began = time.perf_counter()
        jobs = await noop.kiq_many([()] * n)
        await worker.run()
        await aioq.gather(*jobs, timeout=300)
        took = time.perf_counter() - began
        after = await measure()
    finally:
        await app.aclose()
    return took, before, after


async def main(url: str, n: int) -> None:
    took, before, after = await drain_noops(url, n, lambda: _cpu(url))
    used = after - before
    rate = f"{n / took:,.0f}/s"
    print(f"{url}: {n} tasks in {took:.2f} s ({rate}), Redis CPU {used * 1e6 / n:.0f} µs/task")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20_000))
