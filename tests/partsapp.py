"""An app with a partitioned queue, for the command-line tests of partitioned
queues (``aioq status|purge|worker -Q hot``). Prefix and Redis come from the
environment."""

from __future__ import annotations

import os

import aioq

app = aioq.App(prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-parts"))
app.queue("hot", partitions=4)


@app.task(queue="hot")
async def add(x: int, y: int) -> int:
    return x + y
