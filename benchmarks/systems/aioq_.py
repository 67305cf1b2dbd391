"""aioq: the system under test. Runs in the project venv."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from benchmarks.systems import base

PACKAGES: list[str] | None = None  # the project venv, aioq installed editable
BATCH = True
MULTIPROC = True
RECOVERY = True
SKIP: set[str] = set()
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

    TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep}

    class Client(base.Client):
        async def open(self) -> None:
            await app.ping()
            self.redis = redis.asyncio.Redis.from_url(base.REDIS_URL)  # remaining() only
            self.stream = f"{base.PREFIX}:{{default}}:stream"

        async def close(self) -> None:
            await app.aclose()
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            return await TASKS[task].kiq(*args)

        async def enqueue_many(self, task: str, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
            return list(await TASKS[task].kiq_many(calls))

        async def result(self, handle: Any, timeout: float) -> Any:
            return await handle.result(timeout=timeout)

        async def remaining(self, handles: Sequence[Any]) -> int:
            # The worker writes the result, then XACK + XDEL: an empty stream means
            # every result is visible.
            return int(await self.redis.xlen(self.stream))
