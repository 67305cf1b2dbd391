"""The quickstart's tasks: what an app's ``tasks.py`` looks like.

Run a worker for them with::

    aioq worker examples.quickstart.tasks:app
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random

import msgspec

import aioq

app = aioq.App(prefix=os.environ.get("AIOQ_DEMO_PREFIX", "aioq-demo"))


class Thumbnail(msgspec.Struct):
    image_id: int
    width: int
    height: int
    digest: str


@app.task
async def make_thumbnail(ctx: aioq.Context, image_id: int, width: int = 128) -> Thumbnail:
    """An I/O-bound task: waits like a download would, then returns a typed result."""
    await asyncio.sleep(random.uniform(0.01, 0.1))
    digest = hashlib.sha256(f"{image_id}:{ctx.attempt}".encode()).hexdigest()[:12]
    return Thumbnail(image_id, width, width * 3 // 4, digest)


@app.task(name="reports.checksum", queue="reports")
def checksum(data: bytes, rounds: int) -> str:
    """A CPU-bound sync task: runs in a worker thread, off the event loop."""
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


@app.task
async def flaky(n: int) -> int:
    """Fails for some inputs, to show how a remote error comes back."""
    if n % 7 == 0:
        raise ValueError(f"{n} is divisible by 7")
    return n * n


@app.task
async def import_rows(ctx: aioq.Context, rows: int) -> int:
    """A long task that reports its progress: ``job.updates()`` streams it."""
    for i in range(1, rows + 1):
        await asyncio.sleep(0.02)
        if i % 5 == 0 or i == rows:
            await ctx.progress(i, total=rows, stage="importing")
    return rows
