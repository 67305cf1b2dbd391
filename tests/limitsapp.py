"""Tasks with limits, served by worker *processes* (``aioq worker tests.limitsapp:app``).

Each records what it saw in Redis under the test's prefix, so the test can
check the limits across processes.
"""

from __future__ import annotations

import asyncio
import os
import time

import aioq

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-limits"),
    visibility_timeout=float(os.environ.get("AIOQ_TEST_VT", "2.0")),
)


@app.task(rate_limit="20/s")
async def paced(ctx: aioq.Context, n: int) -> int:
    """Records its start time (seconds, as a string) and who ran it."""
    redis = ctx.app.broker.redis
    await redis.rpush(f"{app.prefix}:starts", repr(time.time()))
    await redis.sadd(f"{app.prefix}:workers", ctx.worker_id)
    return n


@app.task(max_running=2)
async def capped(ctx: aioq.Context, seconds: float) -> int:
    """Records how many ``capped`` jobs ran at once (anywhere) when it started."""
    redis = ctx.app.broker.redis
    running = await redis.incr(f"{app.prefix}:running")
    await redis.rpush(f"{app.prefix}:seen", running)
    await redis.sadd(f"{app.prefix}:workers", ctx.worker_id)
    try:
        await asyncio.sleep(seconds)
    finally:
        await redis.decr(f"{app.prefix}:running")
    return running
