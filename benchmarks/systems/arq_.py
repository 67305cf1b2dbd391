"""arq: ``enqueue_job`` on an ArqRedis pool, a worker from ``WorkerSettings``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

from benchmarks.systems import base

PACKAGES = ["arq", "hiredis"]
BATCH = False
MULTIPROC = False  # one process per `arq` command
RECOVERY = False
SKIP: set[str] = set()
AVAILABLE = base.available("arq")


def worker_cmd(python: str, workers: int, concurrency: int) -> list[str]:
    return [python, "-m", "arq", "benchmarks.systems.arq_.WorkerSettings"]


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def sleep(ctx: dict[str, Any], seconds: float) -> None:
    await asyncio.sleep(seconds)


async def io(ctx: dict[str, Any]) -> None:
    await base.incr()


async def io_shared(ctx: dict[str, Any]) -> None:
    await ctx["io_redis"].incr(base.IO_KEY)


async def startup(ctx: dict[str, Any]) -> None:
    """``on_startup``: runs once per worker; what it puts in ``ctx`` every job sees."""
    ctx["io_redis"] = base.open_client()


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["io_redis"].aclose()


if AVAILABLE:
    from arq import create_pool
    from arq.connections import RedisSettings

    _url = urlparse(base.REDIS_URL)
    SETTINGS = RedisSettings(host=_url.hostname or "127.0.0.1", port=_url.port or 6379)

    class WorkerSettings:
        functions = [noop, sleep, io, io_shared]
        on_startup = startup
        on_shutdown = shutdown
        redis_settings = SETTINGS
        max_jobs = base.CONCURRENCY
        keep_result = 3600
        # The worker polls the queue; its default 0.5 s idle poll would make every
        # round trip of scenario D take ~0.5 s. 0.01 s is kinder to arq.
        poll_delay = 0.01

    class Client(base.Client):
        async def open(self) -> None:
            self.redis = await create_pool(SETTINGS)
            self.window = base.KeyWindow(self.redis, lambda j: f"arq:result:{j.job_id}")

        async def close(self) -> None:
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            return await self.redis.enqueue_job(task, *args)

        async def result(self, handle: Any, timeout: float) -> Any:
            # Job.result polls; its default delay (0.5 s) would dominate scenario D.
            return await handle.result(timeout=timeout, poll_delay=0.001)

        async def remaining(self, handles: Sequence[Any]) -> int:
            return await self.window.remaining(handles)
