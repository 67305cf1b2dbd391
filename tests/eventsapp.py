"""Tasks for the events tests (``App.events()``, ``aioq events``). Prefix and
Redis come from the environment, so the CLI loads the same app."""

from __future__ import annotations

import asyncio
import os

import aioq

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-events"),
    visibility_timeout=2.0,
    events_maxlen=10_000,
)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task(queue="other")
async def elsewhere(x: int) -> int:
    return x


@app.task
async def boom(message: str) -> None:
    raise ValueError(message)


@app.task(retries=1, retry_backoff=0.05, retry_backoff_max=0.05)
async def flaky(message: str) -> None:
    raise RuntimeError(message)


@app.task
async def steps(ctx: aioq.Context, n: int) -> int:
    for i in range(1, n + 1):
        await ctx.progress(i, n)
    return n


@app.task
async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.task
async def chain_step(x: int) -> int:
    return x + 1
