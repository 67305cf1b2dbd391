"""Tasks for the dashboard tests (API, actions, and the browser test)."""

from __future__ import annotations

import asyncio
import os

import aioq

app = aioq.App(prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-dash"))


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def boom(message: str) -> None:
    raise ValueError(message)


@app.task(queue="parked")
async def parked(n: int) -> int:
    """Sent to a queue the tests' workers do not read: it stays ready."""
    return n


@app.task
async def slow(ctx: aioq.Context, steps: int) -> int:
    for i in range(steps):
        await ctx.progress(i + 1, steps)
        await asyncio.sleep(0.2)
    return steps
