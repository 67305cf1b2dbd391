"""Tasks served by ``aioq worker tests.tlsapp:app`` in the TLS Cluster and TLS
Sentinel tests (tests/integration/test_tls.py). Redis (a ``rediss+cluster://`` or
``rediss+sentinel://`` URL with the CA in its query string) and the prefix come
from the environment."""

from __future__ import annotations

import os

import aioq

app = aioq.App(prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-tls"), visibility_timeout=2.0)


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task(retries=2, retry_backoff=0.05)
async def flaky(ctx: aioq.Context, x: int) -> list[int]:
    """Fails on its first attempt; returns the attempt that succeeded."""
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return [x, ctx.attempt]
