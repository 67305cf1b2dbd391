"""Tasks for the chaos suite. Every execution is recorded in a separate *oracle*
Redis (``AIOQ_ORACLE_URL``) that no fault touches, so lost and duplicated work
can be counted after the run."""

from __future__ import annotations

import asyncio
import os
import time

import redis
import redis.asyncio as aredis

import aioq

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "chaos"),
    visibility_timeout=float(os.environ.get("AIOQ_TEST_VT", "2.0")),
)
_oracle: aredis.Redis | None = None


def oracle() -> aredis.Redis:
    global _oracle
    if _oracle is None:
        _oracle = aredis.Redis.from_url(os.environ["AIOQ_ORACLE_URL"])
    return _oracle


@app.task
async def work(ctx: aioq.Context, ms: int) -> int:
    await oracle().hincrby("executions", ctx.job_id, 1)
    await asyncio.sleep(ms / 1000)
    await oracle().hincrby("finishes", ctx.job_id, 1)
    return ms


@app.task(retries=3, retry_backoff=0.05)
async def flaky(ctx: aioq.Context, fail_times: int) -> int:
    """Fails its first ``fail_times`` attempts (counted in the oracle), then succeeds."""
    n = await oracle().hincrby("attempts", ctx.job_id, 1)
    await asyncio.sleep(0.2)
    if n <= fail_times:
        raise RuntimeError(f"planned failure {n}")
    await oracle().hincrby("successes", ctx.job_id, 1)
    return n


@app.task
async def step(ctx: aioq.Context, x: int) -> int:
    await oracle().hincrby("executions", ctx.job_id, 1)
    await asyncio.sleep(0.02 + (x % 4) * 0.01)
    return x + 1


@app.task
async def total(ctx: aioq.Context, values: list[int]) -> int:
    await oracle().hincrby("callbacks", ctx.job_id, 1)
    return sum(values)


@app.task(rate_limit="50/s", max_running=4, priority=2)
async def limited(ctx: aioq.Context, ms: int) -> int:
    """Records each start's time (oracle) so the rate can be checked after kills."""
    now = time.time()
    await oracle().hincrby("executions", ctx.job_id, 1)
    await oracle().rpush("starts", repr(now))
    await asyncio.sleep(ms / 1000)
    return ms


_sync_oracle: redis.Redis | None = None


def sync_oracle() -> redis.Redis:
    global _sync_oracle
    if _sync_oracle is None:
        _sync_oracle = redis.Redis.from_url(os.environ["AIOQ_ORACLE_URL"])
    return _sync_oracle


@app.task
def crunch(ctx: aioq.Context, ms: int) -> int:
    """A sync task that keeps a CPU (and the GIL) busy for ``ms`` of CPU time."""
    sync_oracle().hincrby("executions", ctx.job_id, 1)
    end = time.thread_time() + ms / 1000
    n = 0
    while time.thread_time() < end:
        n += sum(i * i for i in range(200))
    sync_oracle().hincrby("finishes", ctx.job_id, 1)
    return ms
