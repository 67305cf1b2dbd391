"""Priorities (a stream per level, most urgent first, lows still move) and routing."""

from __future__ import annotations

import asyncio

import pytest
import redis

import aioq
from tests.conftest import WorkerRunner


async def test_high_priority_jumps_a_backlog_of_low(app: aioq.App, workers: WorkerRunner) -> None:
    order: list[str] = []
    gate = asyncio.Event()

    @app.task
    async def block() -> None:
        await gate.wait()

    @app.task
    async def work(kind: str, n: int) -> None:
        order.append(f"{kind}{n}")
        await asyncio.sleep(0)

    await workers.start(app, concurrency=1)
    blocker = await block.kiq()
    while not order and (await blocker.state()) is not aioq.JobState.RUNNING:
        await asyncio.sleep(0.01)
    await work.kiq_many([("low", i) for i in range(1000)])  # the worker is busy
    await work.with_options(priority=9).kiq_many([("high", i) for i in range(10)])
    gate.set()
    while len(order) < 1010:
        await asyncio.sleep(0.05)
    highs = [i for i, name in enumerate(order) if name.startswith("high")]
    # All ten highs start before the remaining lows: at most one low in ten reads
    # (the anti-starvation read) gets in between.
    assert highs[-1] < 10 + 10 // 9 + 1, order[:20]
    assert sorted(order) == sorted(
        [f"low{i}" for i in range(1000)] + [f"high{i}" for i in range(10)]
    )


async def test_low_priority_still_progresses_under_a_flood(
    app: aioq.App, workers: WorkerRunner
) -> None:
    order: list[int] = []

    @app.task
    async def work(priority: int) -> None:
        order.append(priority)

    await work.with_options(priority=0).kiq_many([(0,)] * 10)
    await work.with_options(priority=9).kiq_many([(9,)] * 300)
    await workers.start(app, concurrency=1)
    while len(order) < 310:
        await asyncio.sleep(0.05)
    first_low = order.index(0)
    assert first_low <= 10, order[:20]  # one read in ten serves the lowest level first
    assert order.count(0) == 10


async def test_priority_lands_in_its_level_stream(app: aioq.App, sync_redis: redis.Redis) -> None:
    @app.task(priority=3)
    async def noop() -> None: ...

    await noop.kiq()
    await noop.with_options(priority=7).kiq()
    await app.send(noop.name, priority=0)
    assert sync_redis.xlen(app.keys.stream("default", 3)) == 1
    assert sync_redis.xlen(app.keys.stream("default", 7)) == 1
    assert sync_redis.xlen(app.keys.stream("default")) == 1
    for bad in (10, -1, 1.5, True):
        with pytest.raises(aioq.ConfigurationError, match="priority"):
            noop.with_options(priority=bad)  # type: ignore[arg-type]


async def test_delayed_and_retried_jobs_keep_their_priority(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    attempts: list[int] = []

    @app.task(retries=1, retry_backoff=0.05)
    async def flaky(ctx: aioq.Context) -> int:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            raise RuntimeError("once")
        return ctx.attempt

    job = await flaky.with_options(priority=6, delay=0.2).kiq()
    assert sync_redis.zcard(app.keys.delayed("default", 6)) == 1
    await workers.start(app)
    assert await job.result(timeout=10) == 2


async def test_routing_rules_and_their_precedence(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app.routes({"reports.*": "reports", "images.resize": {"queue": "images", "priority": 5}})

    @app.task(name="reports.daily")
    async def daily() -> str:
        return "report"

    @app.task(name="images.resize")
    async def resize() -> str:
        return "resized"

    @app.task(name="reports.pinned", queue="pinned")
    async def pinned() -> str:
        return "pinned"

    @app.task(name="other")
    async def other() -> str:
        return "other"

    assert (daily.queue, daily.priority) == ("reports", 0)
    assert (resize.queue, resize.priority) == ("images", 5)
    assert pinned.queue == "pinned"  # the task's own queue beats the rule
    assert other.queue == "default"  # no rule: the default queue
    assert daily.with_options(queue="urgent").queue == "urgent"  # the call beats all
    assert resize.with_options(priority=1).priority == 1
    assert set(app.queues()) >= {"reports", "images", "pinned", "default"}

    await resize.kiq()
    assert sync_redis.xlen(app.keys.stream("images", 5)) == 1
    job = await app.send("reports.daily")  # by name: routed the same way
    assert sync_redis.xlen(app.keys.stream("reports")) == 1
    await workers.start(app, queues=["reports", "images"])
    assert await job.result(timeout=10) == "report"

    # rules added later apply to tasks already defined
    app.routes({"other": "late"})
    assert other.queue == "late"
    with pytest.raises(aioq.ConfigurationError, match="only 'queue' and 'priority'"):
        app.routes({"x": {"retries": 3}})


async def test_several_queues_are_read_in_turn(app: aioq.App, workers: WorkerRunner) -> None:
    order: list[str] = []

    @app.task
    async def work(queue: str) -> None:
        order.append(queue)

    await work.with_options(queue="a").kiq_many([("a",)] * 50)
    await work.with_options(queue="b").kiq_many([("b",)] * 50)
    await workers.start(app, queues=["a", "b"], concurrency=1)
    while len(order) < 100:
        await asyncio.sleep(0.05)
    first = order[:20]
    assert first.count("a") >= 5 and first.count("b") >= 5, first


async def test_a_redriven_dead_letter_keeps_its_priority(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    job = await app.send("not.registered", priority=4)
    worker = await workers.start(app)
    with pytest.raises(aioq.TaskFailed, match="unknown task"):
        await job.result(timeout=10)
    await workers.stop(worker)
    assert await app.retry_dead("default") == 1
    assert sync_redis.xlen(app.keys.stream("default", 4)) == 1


async def test_an_idle_worker_sees_a_new_level_and_an_arrival(
    app: aioq.App, workers: WorkerRunner
) -> None:
    """Idle, the worker blocks on the level streams that exist; a message at a
    level never used before is found by the next fetch, within ``block``."""

    @app.task
    async def echo(n: int) -> int:
        return n

    await workers.start(app, block=0.3)
    await asyncio.sleep(0.5)  # idle: blocked on the default level
    assert await (await echo.with_options(priority=8).kiq(8)).result(timeout=5) == 8
    await asyncio.sleep(0.5)  # now blocked on two levels (with room for both)
    assert await (await echo.kiq(0)).result(timeout=5) == 0
    assert await (await echo.with_options(priority=8).kiq(9)).result(timeout=5) == 9


async def test_a_new_level_is_seen_after_reads_that_skip_the_fetch(
    app: aioq.App, workers: WorkerRunner
) -> None:
    """A worker on one level stream that a blocking read just emptied blocks again at
    once, without ``fetch.lua``; a message at a new level is still found (by the
    fetch that runs at least every ``block``), and so are later ones."""

    @app.task
    async def echo(n: int) -> int:
        return n

    await workers.start(app, block=0.3)
    for n in range(5):  # round trips served by the blocking read
        assert await (await echo.kiq(n)).result(timeout=5) == n
    assert await (await echo.with_options(priority=6).kiq(6)).result(timeout=5) == 6
    assert await (await echo.kiq(7)).result(timeout=5) == 7
