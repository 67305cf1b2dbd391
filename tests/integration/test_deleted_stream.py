"""A queue's stream deleted under a worker (``FLUSHDB``, a ``DEL`` by hand, a
Redis that lost its data while the worker's read was blocked on it).

Redis ends a blocked ``XREADGROUP`` on a deleted stream with the error reply
``UNBLOCKED the stream key no longer exists``. That is the same situation as
``NOGROUP`` (the group went with the stream): the worker recreates its groups
and carries on; it must not exit.
"""

from __future__ import annotations

import asyncio

import pytest
import redis

import aioq
from tests.conftest import WorkerRunner

pytestmark = pytest.mark.timeout(60)


async def test_a_stream_deleted_under_a_blocked_read_does_not_kill_the_worker(
    redis_url: str, prefix: str, workers: WorkerRunner
) -> None:
    app = aioq.App(redis_url, prefix=prefix, visibility_timeout=2.0)

    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    try:
        # A long block, so the read is surely blocked when the stream goes.
        worker = await workers.start(app, concurrency=4, block=5.0)
        assert await (await add.kiq(1, 2)).result(timeout=10) == 3  # the stream exists
        task = next(t for w, t in workers.running if w is worker)
        client = redis.Redis.from_url(redis_url)
        stream = f"{prefix}:{{default}}:stream"
        await asyncio.sleep(0.5)  # the worker is back in its blocking read
        assert client.delete(stream) == 1
        await asyncio.sleep(0.5)
        assert not task.done(), f"the worker exited: {task.exception()!r}"
        assert await (await add.kiq(2, 3)).result(timeout=15) == 5
        assert not task.done()
        client.close()
    finally:
        await workers.stop_all()
        await app.aclose()
