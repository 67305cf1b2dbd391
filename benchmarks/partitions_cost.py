"""What a partitioned queue costs on one Redis node: N no-op jobs sent with
``kiq_many`` and drained by an in-process worker (concurrency 100), to a plain
queue, then to the same queue declared with ``--partitions`` partitions. Rounds
alternate; the best of ``--reps`` is printed, with Redis' CPU time per task over
the drain (``INFO cpu`` deltas: used_cpu_sys + used_cpu_user).

    python scripts/with_redis.py -- .venv/bin/python benchmarks/partitions_cost.py

On one node, partitions buy nothing but cost a little (the worker reads more
streams); they exist so a cluster can put each partition on its own shard. With
a cluster URL (``AIOQ_REDIS_URL=redis+cluster://host:port``, e.g. from
``scripts/with_cluster.py``: ``redis+cluster://`` + its node) Redis CPU is summed
over every primary, and ``--partitions 3`` spreads the queue over three shards.
It FLUSHALLs the Redis it is given: only point it at a private one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import redis

import aioq
from aioq.testing.worker import running_worker

URL = os.environ.get("AIOQ_REDIS_URL", "redis://127.0.0.1:1/0")


CLUSTER = URL.startswith(("redis+cluster://", "rediss+cluster://"))


def admin() -> redis.Redis:
    """A client for INFO and FLUSHALL: of the server, or of every primary."""
    if CLUSTER:
        node = URL.replace("+cluster", "", 1).split(",")[0]
        return redis.RedisCluster.from_url(node)  # type: ignore[return-value]
    return redis.Redis.from_url(URL)


def redis_cpu(client: redis.Redis) -> float:
    if CLUSTER:
        infos = client.info("cpu", target_nodes=redis.RedisCluster.PRIMARIES)
        rows = list(infos.values())
    else:
        rows = [client.info("cpu")]
    return sum(float(i["used_cpu_sys"]) + float(i["used_cpu_user"]) for i in rows)


def flush(client: redis.Redis) -> None:
    if CLUSTER:
        client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    else:
        client.flushall()


async def one_round(partitions: int, n: int) -> tuple[float, float, float]:
    """(enqueue wall s, drain wall s, Redis CPU s during the drain)."""
    client = admin()
    flush(client)
    app = aioq.App(URL, prefix="partcost")
    app.queue("hot", partitions=partitions)

    @app.task(name="noop", queue="hot")
    async def noop() -> None:
        return None

    await noop.kiq()  # scripts loaded, connections open
    t0 = time.perf_counter()
    for i in range(0, n, 1000):
        await noop.kiq_many([()] * min(1000, n - i))
    enqueue = time.perf_counter() - t0
    async with running_worker(app, concurrency=100) as worker:
        cpu0, t0 = redis_cpu(client), time.perf_counter()
        await worker.drain(timeout=300)
        drain, cpu = time.perf_counter() - t0, redis_cpu(client) - cpu0
    await app.aclose()
    client.close()
    return enqueue, drain, cpu


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    best: dict[int, list[float]] = {}
    for _ in range(args.reps):
        for parts in (1, args.partitions):
            row = await one_round(parts, args.n)
            prev = best.get(parts)
            best[parts] = (
                list(row) if prev is None else [min(a, b) for a, b in zip(prev, row, strict=True)]
            )
    n = args.n
    for parts, (enqueue, drain, cpu) in best.items():
        label = "one queue" if parts == 1 else f"{parts} partitions"
        print(
            f"{label:14}  enqueue {n / enqueue:8,.0f}/s   drain {n / drain:7,.0f}/s   "
            f"Redis CPU {cpu / n * 1e6:5.1f} us per task"
        )


if __name__ == "__main__":
    asyncio.run(main())
