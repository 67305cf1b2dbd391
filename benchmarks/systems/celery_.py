"""Celery with the Redis broker and result backend (``celery[redis]``).

One worker process is ``--pool threads -c C`` (Celery's I/O-bound pool, one
process); ``-w 2`` is not measured. The client API is synchronous: calls run in a
32-thread pool (``base.SyncClient``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from benchmarks.systems import base

PACKAGES = ["celery[redis]", "hiredis"]
BATCH = False
MULTIPROC = False
RECOVERY = False
SKIP: set[str] = set()
AVAILABLE = base.available("celery")


def worker_cmd(python: str, workers: int, concurrency: int) -> list[str]:
    return [
        *(python, "-m", "celery", "-A", "benchmarks.systems.celery_", "worker"),
        *("--pool", "threads", "-c", str(concurrency), "--loglevel", "WARNING"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]


if AVAILABLE:
    import redis.asyncio as aredis
    from celery import Celery
    from celery.signals import worker_init

    app = Celery("bench", broker=base.REDIS_URL, backend=base.REDIS_URL)
    app.conf.update(result_expires=3600, worker_hijack_root_logger=False)

    @app.task(name="noop")
    def noop() -> None:
        return None

    @app.task(name="sleep")
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @app.task(name="io")
    def io() -> None:
        base.incr_sync()

    # B_io_shared: a client made once per worker process at start-up. Celery's
    # worker_process_init fires in prefork (and solo) pool processes only; the
    # threads pool runs in the worker's own process, which sends worker_init.
    io_redis: Any = None

    @worker_init.connect
    def open_clients(**_: Any) -> None:
        global io_redis
        io_redis = base.open_sync_client()

    @app.task(name="io_shared")
    def io_shared() -> None:
        io_redis.incr(base.IO_KEY)

    TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "io": io, "io_shared": io_shared}

    class Client(base.SyncClient):
        async def open(self) -> None:
            self.redis = aredis.Redis.from_url(base.REDIS_URL)
            self.window = base.KeyWindow(self.redis, lambda r: f"celery-task-meta-{r.id}")

        async def close(self) -> None:
            await super().close()
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            return await self.call(TASKS[task].delay, *args)

        async def result(self, handle: Any, timeout: float) -> Any:
            return await self.call(handle.get, timeout)

        async def remaining(self, handles: Sequence[Any]) -> int:
            return await self.window.remaining(handles)
