"""Worker behaviour: bounded concurrency, late acks, leases and recovery."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

import aioq
from tests.conftest import WorkerRunner, both_record_modes


@both_record_modes
async def test_concurrency_is_bounded(app: aioq.App, workers: WorkerRunner) -> None:
    running = 0
    peak = 0

    @app.task
    async def hold() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    worker = await workers.start(app, concurrency=3)
    jobs = await hold.kiq_many([()] * 30)
    await asyncio.gather(*(j.result(timeout=20) for j in jobs))
    assert peak == 3
    # a slot is freed once its completion is confirmed, just after the waiter
    # was woken by the outcome it published
    for _ in range(100):
        if worker.running == 0:
            break
        await asyncio.sleep(0.01)
    assert worker.running == 0


@both_record_modes
async def test_a_finished_job_is_not_run_again(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    """A crash between writing the result and the ack redelivers the message:
    the worker sees the final record and acks it without running the task."""
    runs = 0

    @app.task
    async def once() -> int:
        nonlocal runs
        runs += 1
        return runs

    await workers.start(app)
    job = await once.kiq()
    assert await job.result(timeout=10) == 1
    # Re-deliver the very same message, as after a crash before XACK.
    stream = app.keys.stream("default")
    record = sync_redis.hgetall(app.keys.job(job.id))
    assert record[b"state"] == b"succeeded"
    from aioq._core.message import Message, encode

    sync_redis.xadd(stream, {"m": encode(Message(job.id, once.name, "default", [], {}, 0))})
    for _ in range(100):
        if sync_redis.xlen(stream) == 0:
            break
        await asyncio.sleep(0.02)
    assert sync_redis.xlen(stream) == 0
    assert runs == 1
    assert await job.result(timeout=1) == 1


@both_record_modes
async def test_a_dead_workers_message_is_recovered(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    job = await add.kiq(2, 3)
    stream = app.keys.stream("default")
    # A "worker" that reads the message and dies without acking it.
    sync_redis.xgroup_create(stream, "workers", id="0", mkstream=True)
    got = sync_redis.xreadgroup("workers", "ghost", {stream: ">"}, count=10)
    assert len(got[0][1]) == 1
    await workers.start(app)  # visibility_timeout is 2 s in the test app
    assert await job.result(timeout=10) == 5
    # The outcome is written before the ack (per job, they are two steps): the
    # waiter may wake before the XACK lands.
    deadline = time.monotonic() + 5
    while sync_redis.xpending(stream, "workers")["pending"] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert sync_redis.xpending(stream, "workers")["pending"] == 0


async def test_a_long_task_on_a_live_worker_is_not_taken_over(
    app: aioq.App, workers: WorkerRunner
) -> None:
    runs = 0

    @app.task
    async def long() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(app.visibility_timeout * 2)  # twice the lease
        return runs

    await workers.start(app)
    job = await long.kiq()
    await asyncio.sleep(0.3)
    await workers.start(app)  # a second worker that would steal an unrenewed message
    assert await job.result(timeout=15) == 1
    assert runs == 1
    assert (await job.info()).attempts == 1


async def test_stop_lets_in_flight_tasks_finish(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def slow(n: int) -> int:
        await asyncio.sleep(0.5)
        return n

    worker = await workers.start(app, concurrency=5)
    jobs = await slow.kiq_many([(i,) for i in range(5)])
    while worker.running < 5:
        await asyncio.sleep(0.01)
    await workers.stop(worker)
    assert [await j.result(timeout=1) for j in jobs] == list(range(5))


async def test_grace_expiry_hands_messages_to_other_workers(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task
    async def stuck(n: int) -> int:
        await asyncio.sleep(60 if n == 0 else 0)
        return n

    first = await workers.start(app, concurrency=1, grace=0.2)
    job = await stuck.kiq(0)
    while first.running < 1:
        await asyncio.sleep(0.01)
    await workers.stop(first)  # cancels the task after 0.2 s, releases its message
    assert await job.state() is aioq.JobState.RUNNING
    pending = sync_redis.xpending_range(app.keys.stream("default"), "workers", "-", "+", 10)
    assert len(pending) == 1 and pending[0]["time_since_delivered"] >= 2000


@pytest.mark.slow
async def test_a_blocked_loop_does_not_make_a_worker_rerun_its_own_tasks(
    redis_url: str, prefix: str, workers: WorkerRunner
) -> None:
    """An async task blocks the event loop past the visibility timeout while a sync
    task runs in a thread: the worker's own recovery pass must not reclaim either
    message from itself (issue 10, item 10)."""
    app = aioq.App(redis_url, prefix=prefix, visibility_timeout=1.0)
    runs: dict[str, int] = {"blocker": 0, "innocent": 0}

    @app.task
    async def blocker() -> None:
        runs["blocker"] += 1
        await asyncio.sleep(0.3)  # the reader is back in its blocking read by now
        time.sleep(app.visibility_timeout * 1.5)  # blocks the whole event loop

    @app.task
    def innocent() -> None:
        runs["innocent"] += 1
        time.sleep(app.visibility_timeout * 2.5)

    await workers.start(app, concurrency=4, block=1.0)  # the CLI's read timing
    second = await innocent.kiq()
    while runs["innocent"] == 0:
        await asyncio.sleep(0.01)
    first = await blocker.kiq()
    await asyncio.gather(first.result(timeout=20), second.result(timeout=20))
    await asyncio.sleep(app.visibility_timeout)  # a late reclaim would show by now
    try:
        assert runs == {"blocker": 1, "innocent": 1}
        assert (await second.info()).attempts == 1
    finally:
        await workers.stop_all()
        await app.aclose()
