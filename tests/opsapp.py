"""Tasks for the operations tests (``aioq status|workers|jobs|job|purge`` and the
worker's per-task log lines). Prefix and Redis come from the environment."""

from __future__ import annotations

import asyncio
import logging
import os

import aioq

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-ops"),
    visibility_timeout=float(os.environ.get("AIOQ_TEST_VT", "2.0")),
)
log = logging.getLogger("tests.opsapp")


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def chatty(x: int) -> int:
    """Logs from inside the task (the JSON lines must carry the job's fields)."""
    log.info("working on %d", x)
    return x


@app.task
def chatty_sync(x: int) -> int:
    """The same from a worker thread (the context is copied into it)."""
    log.info("sync working on %d", x)
    return x


@app.task
async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.task
async def boom(message: str) -> None:
    raise ValueError(message)


@app.task(retries=1, retry_backoff=0.1)
async def flaky(message: str) -> None:
    raise RuntimeError(message)


@app.task(retries=1)
async def later(message: str) -> None:
    """Fails once, asking for its retry a minute later (stays ``retrying``)."""
    raise aioq.Retry(delay=60)
