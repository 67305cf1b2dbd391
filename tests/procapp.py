"""Tasks served by worker *processes* in the process tests (``aioq worker tests.procapp:app``).

The key prefix and visibility timeout come from the environment so each test
is isolated.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter

import redis

import aioq

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-proc"),
    visibility_timeout=float(os.environ.get("AIOQ_TEST_VT", "2.0")),
)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


def runs_key(prefix: str) -> str:
    """The hash where each run of ``sleepy`` leaves one field: run token -> job id."""
    return f"{prefix}:runs"


def runs_per_job(client: redis.Redis, prefix: str) -> Counter[str]:
    """How many times each job's ``sleepy`` body ran (``client``: a sync client of
    the app's Redis)."""
    return Counter(v.decode() for v in client.hvals(runs_key(prefix)))


@app.task
async def sleepy(ctx: aioq.Context, seconds: float) -> str:
    """Sleeps, leaving one mark per run of its body in Redis (to spot duplicates).

    The mark is keyed by a token of this run, not counted with HINCRBY: a write
    sent twice by a client (as redis-py's cluster client did after a broken
    connection) must not look like a second run."""
    run = uuid.uuid4().hex
    await ctx.app.broker.redis.hset(runs_key(app.prefix), run, ctx.job_id)
    await asyncio.sleep(seconds)
    return ctx.worker_id


@app.task(name="math.mul", queue="math")
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def frozen() -> list[int]:
    """How many objects the worker process moved out of the GC's sight (gc.freeze),
    and its young generation's threshold."""
    import gc

    return [gc.get_freeze_count(), gc.get_threshold()[0]]
