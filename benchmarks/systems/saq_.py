"""saq: ``Queue.enqueue``, a worker from a settings dict."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from benchmarks.systems import base

PACKAGES = ["saq[hiredis]", "typing_extensions"]
BATCH = False  # Queue.map enqueues *and waits*; there is no enqueue-only batch
MULTIPROC = True
RECOVERY = False
SKIP: set[str] = set()
AVAILABLE = base.available("saq")


def worker_cmd(python: str, workers: int, concurrency: int) -> list[str]:
    return [python, "-m", "saq", "benchmarks.systems.saq_.settings", "--workers", str(workers)]


async def noop(ctx: Any) -> None:
    return None


async def sleep(ctx: Any, *, seconds: float) -> None:
    await asyncio.sleep(seconds)


async def io(ctx: Any) -> None:
    await base.incr()


async def io_shared(ctx: Any) -> None:
    await ctx["io_redis"].incr(base.IO_KEY)


async def startup(ctx: Any) -> None:
    """The worker's ``startup``: each job's ctx is a copy of the worker's context."""
    ctx["io_redis"] = base.open_client()


async def shutdown(ctx: Any) -> None:
    await ctx["io_redis"].aclose()


if AVAILABLE:
    import redis.asyncio as aredis
    from saq.queue.redis import RedisQueue

    # Queue.from_url(url) would build its client with redis-py's default pool, which
    # redis-py 8 caps at 100 connections: at concurrency >= 100 the worker then fails
    # with MaxConnectionsError and leaves jobs "active" forever. Hence our own client.
    queue = RedisQueue(aredis.from_url(base.REDIS_URL, max_connections=10_000))
    settings = {
        "queue": queue,
        "functions": [noop, sleep, io, io_shared],
        "concurrency": base.CONCURRENCY,
        "startup": startup,
        "shutdown": shutdown,
    }

    class Client(base.Client):
        async def open(self) -> None:
            await queue.connect()

        async def close(self) -> None:
            await queue.disconnect()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            kwargs = {"seconds": args[0]} if task == "sleep" else {}
            return await queue.enqueue(task, **kwargs)

        async def result(self, handle: Any, timeout: float) -> Any:
            await handle.refresh(until_complete=timeout)
            return handle.result

        async def remaining(self, handles: Sequence[Any]) -> int:
            return int(await queue.count("incomplete"))
