"""Tasks served by worker *processes* in the process tests (``aioq worker tests.procapp:app``).

The key prefix and visibility timeout come from the environment so each test
is isolated.
"""

from __future__ import annotations

import asyncio
import os

import aioq

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-proc"),
    visibility_timeout=float(os.environ.get("AIOQ_TEST_VT", "2.0")),
)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def sleepy(ctx: aioq.Context, seconds: float) -> str:
    """Sleeps, counting each execution of each job in Redis (to spot duplicates)."""
    redis = ctx.app.broker.redis
    await redis.hincrby(f"{app.prefix}:executions", ctx.job_id, 1)
    await asyncio.sleep(seconds)
    return ctx.worker_id


@app.task(name="math.mul", queue="math")
def mul(x: int, y: int) -> int:
    return x * y
