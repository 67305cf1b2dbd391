"""streaq: a ``Worker`` object that is both the task registry and the client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from benchmarks.systems import base

PACKAGES = ["streaq", "hiredis"]  # the harness adds redis-py (for remaining()) and uvloop
BATCH = True  # Worker.enqueue_many: one pipeline
MULTIPROC = True
RECOVERY = False
SKIP: set[str] = set()
AVAILABLE = base.available("streaq")


def worker_cmd(python: str, workers: int, concurrency: int) -> list[str]:
    return [
        *(python, "-m", "streaq", "run", "benchmarks.systems.streaq_:worker"),
        *("--workers", str(workers)),
    ]


if AVAILABLE:
    import redis.asyncio as aredis
    from streaq import Worker

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[dict[str, Any]]:
        """B_io_shared: streaq's per-worker context; tasks read ``worker.context``."""
        client = base.open_client()
        try:
            yield {"io_redis": client}
        finally:
            await client.aclose()

    worker = Worker(
        redis_url=base.REDIS_URL,
        concurrency=base.CONCURRENCY,
        anyio_kwargs={"use_uvloop": True},
        lifespan=lifespan,
    )

    @worker.task()
    async def noop() -> None:
        return None

    @worker.task()
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @worker.task()
    async def io() -> None:
        await base.incr()

    @worker.task()
    async def io_shared() -> None:
        await worker.context["io_redis"].incr(base.IO_KEY)

    TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "io": io, "io_shared": io_shared}

    class Client(base.Client):
        async def open(self) -> None:
            await worker.__aenter__()
            self.redis = aredis.Redis.from_url(base.REDIS_URL)
            self.window = base.KeyWindow(self.redis, lambda t: worker.results_key + t.id)

        async def close(self) -> None:
            await worker.__aexit__(None, None, None)
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            return await TASKS[task].enqueue(*args)

        async def enqueue_many(self, task: str, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
            tasks = [TASKS[task].enqueue(*args) for args in calls]
            await worker.enqueue_many(tasks)
            return tasks

        async def result(self, handle: Any, timeout: float) -> Any:
            return await handle.result(timeout=int(timeout))

        async def remaining(self, handles: Sequence[Any]) -> int:
            return await self.window.remaining(handles)
