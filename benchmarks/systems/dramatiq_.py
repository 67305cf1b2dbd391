"""Dramatiq with the Redis broker and the Results middleware (Redis backend).

``--processes W --threads C``. The client API is synchronous: calls run in a
32-thread pool (``base.SyncClient``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from benchmarks.systems import base

PACKAGES = ["dramatiq[redis]", "hiredis"]
BATCH = False
MULTIPROC = True
RECOVERY = False
SKIP: set[str] = set()
AVAILABLE = base.available("dramatiq")


def worker_cmd(python: str, workers: int, concurrency: int) -> list[str]:
    return [
        *(python, "-m", "dramatiq", "benchmarks.systems.dramatiq_"),
        *("--processes", str(workers), "--threads", str(concurrency)),
    ]


if AVAILABLE:
    import dramatiq
    import redis
    import redis.asyncio as aredis
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    # redis-py 8 caps a pool at 100 connections by default; with --threads 500
    # (scenario C) the threads then fail with "Too many connections" and their
    # messages never finish. Hence pools sized for the threads.
    def _pool() -> redis.ConnectionPool:
        return redis.ConnectionPool.from_url(base.REDIS_URL, max_connections=10_000)

    class IoClient(dramatiq.Middleware):
        """B_io_shared: a client made once per worker process, after it booted
        (Dramatiq's per-process start-up is a middleware's ``after_process_boot``)."""

        client: Any = None

        def after_process_boot(self, broker: dramatiq.Broker) -> None:
            IoClient.client = base.open_sync_client()

    backend = RedisBackend(connection_pool=_pool())
    broker = RedisBroker(connection_pool=_pool())
    broker.add_middleware(Results(backend=backend))
    broker.add_middleware(IoClient())
    dramatiq.set_broker(broker)

    @dramatiq.actor(actor_name="noop", store_results=True)
    def noop() -> None:
        return None

    @dramatiq.actor(actor_name="sleep", store_results=True)
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @dramatiq.actor(actor_name="io", store_results=True)
    def io() -> None:
        base.incr_sync()

    @dramatiq.actor(actor_name="io_shared", store_results=True)
    def io_shared() -> None:
        IoClient.client.incr(base.IO_KEY)

    TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "io": io, "io_shared": io_shared}

    class Client(base.SyncClient):
        async def open(self) -> None:
            self.redis = aredis.Redis.from_url(base.REDIS_URL)
            self.window = base.KeyWindow(self.redis, backend.build_message_key)

        async def close(self) -> None:
            await super().close()
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            return await self.call(TASKS[task].send, *args)

        async def result(self, handle: Any, timeout: float) -> Any:
            return await self.call(
                lambda: handle.get_result(block=True, timeout=int(timeout * 1000))
            )

        async def remaining(self, handles: Sequence[Any]) -> int:
            return await self.window.remaining(handles)
