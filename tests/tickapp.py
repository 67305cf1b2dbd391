"""A schedule every half second, run by ``aioq scheduler`` and ``aioq worker``
*processes* in tests/integration/test_cluster_processes.py. The key prefix comes
from the environment so each test is isolated."""

from __future__ import annotations

import os
import uuid
from collections import Counter

import redis

import aioq

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-tick"),
    visibility_timeout=float(os.environ.get("AIOQ_TEST_VT", "2.0")),
)


def runs_key(prefix: str) -> str:
    """The hash where each run of ``tick`` leaves one field: run token -> job id."""
    return f"{prefix}:runs"


def runs_per_job(client: redis.Redis, prefix: str) -> Counter[str]:
    """How many times each job's ``tick`` body ran (``client``: a sync client of
    the app's Redis, a cluster client on a cluster)."""
    return Counter(v.decode() for v in client.hvals(runs_key(prefix)))


@app.task
async def tick(ctx: aioq.Context) -> str:
    """Leaves one mark per run of its body (keyed by a token of this run, so a
    write the client sent twice cannot look like a second run)."""
    await ctx.app.broker.redis.hset(runs_key(app.prefix), uuid.uuid4().hex, ctx.job_id)
    return ctx.job_id


app.schedule(tick.s(), every=0.5, name="half")
