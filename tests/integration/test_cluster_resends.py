"""On Redis Cluster, a command aioq's client sends is applied once, or fails: never twice.

redis-py's ``RedisCluster`` re-sends a command that met a ConnectionError or
TimeoutError (10 times by default), though Redis may already have applied it; and
its fifth MOVED reply closes every connection of the client, replies in flight
included. A fresh client routes its very first commands without a slot map, so
concurrent first commands draw a burst of MOVED replies: the close cuts some of
them after Redis applied them, and the re-send applies them a second time (a
task's ``HINCRBY`` counted twice, a ``kiq()``'s message added twice). aioq's
cluster client re-sends nothing (its own outage handling retries what is safe to
retry) and follows each MOVED without closing anything (``cluster.cluster_client``).
"""

from __future__ import annotations

import asyncio
import uuid

import redis

import aioq
from tests.conftest import clean_cluster

ROUNDS = 8
"""Fresh clients to try: before the fix about half of them applied a write twice."""
WRITES = 10


async def test_a_fresh_cluster_client_applies_each_write_once(redis_cluster_url: str) -> None:
    hostport = redis_cluster_url.split("://", 1)[1]
    prefix = f"aioqtest-{uuid.uuid4().hex[:10]}"
    check = redis.RedisCluster.from_url(redis_cluster_url)  # its own, settled slot map
    try:
        for n in range(ROUNDS):
            app = aioq.App(f"redis+cluster://{hostport}", prefix=prefix)

            @app.task(name="noop")
            async def noop() -> None:
                pass

            counts = f"{prefix}:counts:{n}"
            try:
                # The client's first commands, all at once: no error, and each once.
                async with asyncio.timeout(20):
                    jobs = await asyncio.gather(
                        *(app.broker.redis.hincrby(counts, str(i), 1) for i in range(WRITES)),
                        *(noop.kiq() for _ in range(WRITES)),
                    )
            finally:
                await app.aclose()
            assert jobs[:WRITES] == [1] * WRITES
            assert {int(v) for v in check.hvals(counts)} == {1}, check.hgetall(counts)
            assert check.hlen(counts) == WRITES
            stream = app.keys.stream("default")
            assert check.xlen(stream) == WRITES * (n + 1), f"round {n}: a message added twice"
            check.delete(counts)
    finally:
        check.close()
        clean_cluster(redis_cluster_url, prefix)
