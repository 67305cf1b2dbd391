"""Tasks and a schedule for the clock tests, served by worker and scheduler
*processes* whose wall clock may be wrong (``tests.clockskew``).

Every task records what it saw by the Redis clock under the test's prefix, so
a test can judge the skewed processes against the one clock aioq trusts.
"""

from __future__ import annotations

import asyncio
import os

import aioq
from tests import clockskew  # noqa: F401  (patches time.time, read at every call)

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-clock"),
    visibility_timeout=float(os.environ.get("AIOQ_TEST_VT", "2.0")),
)


async def redis_us(ctx: aioq.Context) -> int:
    """Redis time now, in µs."""
    seconds, micros = await ctx.app.broker.redis.time()
    return int(seconds) * 1_000_000 + int(micros)


@app.task
async def stamp(ctx: aioq.Context) -> int:
    """Returns the Redis time (µs) at which it started."""
    return await redis_us(ctx)


@app.task(retries=1)
async def retried(ctx: aioq.Context, delay: float) -> list[int]:
    """Fails its first attempt with ``Retry(delay)``; returns the Redis start time
    (µs) of each attempt."""
    key = f"{app.prefix}:attempts:{ctx.job_id}"
    redis = ctx.app.broker.redis
    await redis.rpush(key, await redis_us(ctx))
    if ctx.attempt == 1:
        raise aioq.Retry(delay=delay)
    return [int(v) for v in await redis.lrange(key, 0, -1)]


@app.task(rate_limit="5/s")
async def paced(ctx: aioq.Context) -> int:
    """Records its Redis start time (µs) in ``starts``."""
    started = await redis_us(ctx)
    await ctx.app.broker.redis.rpush(f"{app.prefix}:starts", started)
    return started


@app.task(max_running=1)
async def exclusive(ctx: aioq.Context, seconds: float) -> int:
    """Runs ``seconds``; records (Redis start µs, end µs, worker) in ``spans`` and
    how many ``exclusive`` jobs ran at once (anywhere) when it started."""
    redis = ctx.app.broker.redis
    running = await redis.incr(f"{app.prefix}:running")
    started = await redis_us(ctx)
    try:
        await asyncio.sleep(seconds)
    finally:
        ended = await redis_us(ctx)
        await redis.decr(f"{app.prefix}:running")
        await redis.rpush(f"{app.prefix}:spans", f"{started} {ended} {ctx.worker_id}")
    return int(running)


@app.periodic(every=0.5, name="half")
async def half() -> None:
    pass
