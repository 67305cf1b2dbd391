"""aioq: the system under test. Runs in the project venv."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.systems import base

PACKAGES: list[str] | None = None  # the project venv, aioq installed editable
BATCH = True
MULTIPROC = True
RECOVERY = True
SKIP: set[str] = set()
MANY_QUEUES = True  # scenario M: one worker on many queues
AVAILABLE = base.available("aioq")


def worker_cmd(python: str, workers: int, concurrency: int) -> list[str]:
    return [
        python,
        *("-m", "aioq", "worker", "benchmarks.systems.aioq_:app"),
        *("-w", str(workers), "-c", str(concurrency)),
        # warning by default; AIOQ_BENCH_LOG_LEVEL=info measures the per-task log lines
        *("--log-level", os.environ.get("AIOQ_BENCH_LOG_LEVEL", "warning")),
        # AIOQ_BENCH_METRICS_PORT=9100 measures the per-task cost of --metrics-port
        *metrics_args(),
    ]


def metrics_args() -> list[str]:
    port = os.environ.get("AIOQ_BENCH_METRICS_PORT")
    return ["--metrics-port", port] if port else []


if AVAILABLE:
    import redis.asyncio

    import aioq

    app = aioq.App(
        base.REDIS_URL,
        prefix=base.PREFIX,
        default_queue="default",
        visibility_timeout=base.VISIBILITY_TIMEOUT,
        # AIOQ_BENCH_SIGNING_KEY=<16+ bytes> measures the per-task cost of signing
        signing_keys=[k for k in [os.environ.get("AIOQ_BENCH_SIGNING_KEY")] if k],
    )

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="sleep")
    async def sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @app.task(name="io")
    async def io() -> None:
        await base.incr()

    # Scenario B_io_shared: one client per worker process, made by the documented
    # lifespan hook (docs/hooks.md) and handed to every task through ctx.state.
    @app.on_worker_start
    def open_clients() -> dict[str, Any]:
        return {"redis": base.open_client()}

    @app.on_worker_stop
    async def close_clients(state: Mapping[str, Any]) -> None:
        await state["redis"].aclose()

    @app.task(name="io_shared")
    async def io_shared(ctx: aioq.Context) -> None:
        await ctx.state["redis"].incr(base.IO_KEY)

    TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "io": io, "io_shared": io_shared}

    # Scenario M: BENCH_QUEUES=N spreads the client's jobs over queues q0..q(N-1)
    # (the harness gives the worker the same list in AIOQ_QUEUES).
    QUEUES = [f"q{i}" for i in range(int(os.environ.get("BENCH_QUEUES") or 0))] or ["default"]

    class Client(base.Client):
        async def open(self) -> None:
            await app.ping()
            self.redis = redis.asyncio.Redis.from_url(base.REDIS_URL)  # remaining() only
            self.streams = [f"{base.PREFIX}:{{{q}}}:stream" for q in QUEUES]
            self.sent = 0

        async def close(self) -> None:
            await app.aclose()
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            if QUEUES == ["default"]:
                return await TASKS[task].kiq(*args)
            self.sent += 1
            queue = QUEUES[self.sent % len(QUEUES)]
            return await TASKS[task].with_options(queue=queue).kiq(*args)

        async def enqueue_many(self, task: str, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
            if QUEUES == ["default"]:
                return list(await TASKS[task].kiq_many(calls))
            jobs: list[Any] = []
            per = -(-len(calls) // len(QUEUES))
            for i, queue in enumerate(QUEUES):
                chunk = calls[i * per : (i + 1) * per]
                if chunk:
                    jobs.extend(await TASKS[task].with_options(queue=queue).kiq_many(chunk))
            return jobs

        async def result(self, handle: Any, timeout: float) -> Any:
            return await handle.result(timeout=timeout)

        async def remaining(self, handles: Sequence[Any]) -> int:
            # The worker writes the result, then XACK + XDEL: an empty stream means
            # every result is visible. Streams found empty are not asked again.
            # One script call for all of them: a pipeline of 1,000 XLENs every 10 ms
            # is redis-py work per command, on the cores the worker needs (the
            # 1-queue drain sends one XLEN). See benchmarks/README.md, target 3.
            if len(self.streams) == 1:
                counts = [await self.redis.xlen(self.streams[0])]
            else:
                counts = await self.redis.eval(_XLENS, len(self.streams), *self.streams)
            self.streams = [s for s, n in zip(self.streams, counts, strict=True) if n]
            return sum(int(n) for n in counts)

    _XLENS = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('XLEN', key)
end
return out
"""
