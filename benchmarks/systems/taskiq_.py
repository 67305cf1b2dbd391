"""taskiq + taskiq-redis: RedisStreamBroker with the Redis result backend."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from benchmarks.systems import base

PACKAGES = ["taskiq", "taskiq-redis", "uvloop", "hiredis"]
BATCH = False  # no batch enqueue API
MULTIPROC = True
RECOVERY = False
SKIP: set[str] = set()
AVAILABLE = base.available("taskiq_redis")


def worker_cmd(python: str, workers: int, concurrency: int) -> list[str]:
    # The taskiq CLI runs uvloop when it is installed.
    return [
        *(python, "-m", "taskiq", "worker", "benchmarks.systems.taskiq_:broker"),
        *("--workers", str(workers), "--max-async-tasks", str(concurrency)),
        *("--log-level", "WARNING"),
    ]


if AVAILABLE:
    import redis.asyncio as aredis
    from taskiq import Context, TaskiqDepends, TaskiqEvents, TaskiqState
    from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

    # consumer_id="0": the group (made at worker start-up) also sees messages sent
    # before any worker existed; the default "$" would skip them (scenario B).
    broker = RedisStreamBroker(base.REDIS_URL, consumer_id="0").with_result_backend(
        RedisAsyncResultBackend(base.REDIS_URL, result_ex_time=3600)
    )

    @broker.task(task_name="noop")
    async def noop() -> None:
        return None

    @broker.task(task_name="sleep")
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @broker.task(task_name="io")
    async def io() -> None:
        await base.incr()

    # B_io_shared: the documented shared-state pattern (WORKER_STARTUP fills the
    # TaskiqState; a task gets it through its Context dependency).
    @broker.on_event(TaskiqEvents.WORKER_STARTUP)
    async def open_clients(state: TaskiqState) -> None:
        state.io_redis = base.open_client()

    @broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
    async def close_clients(state: TaskiqState) -> None:
        await state.io_redis.aclose()

    @broker.task(task_name="io_shared")
    async def io_shared(context: Context = TaskiqDepends()) -> None:  # noqa: B008 (taskiq's way)
        await context.state.io_redis.incr(base.IO_KEY)

    TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "io": io, "io_shared": io_shared}

    class Client(base.Client):
        async def open(self) -> None:
            await broker.startup()
            self.redis = aredis.Redis.from_url(base.REDIS_URL)
            self.window = base.KeyWindow(self.redis, lambda t: t.task_id)

        async def close(self) -> None:
            await broker.shutdown()
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            return await TASKS[task].kiq(*args)

        async def result(self, handle: Any, timeout: float) -> Any:
            # wait_result polls; its default interval (0.2 s) would dominate scenario D.
            return await handle.wait_result(check_interval=0.001, timeout=timeout)

        async def remaining(self, handles: Sequence[Any]) -> int:
            return await self.window.remaining(handles)
