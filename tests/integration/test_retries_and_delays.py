"""Delays, ETAs, retries with backoff, Retry, timeouts as failures, max deliveries."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import msgspec
import pytest
import redis

import aioq
from aioq._core.message import Message, encode
from tests.conftest import WorkerRunner, on_cluster_too


@on_cluster_too
async def test_delay_schedules_the_job(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def stamp() -> float:
        return time.time()

    await workers.start(app)
    sent = time.time()
    job = await stamp.with_options(delay=0.6).kiq()
    assert await job.state() is aioq.JobState.SCHEDULED
    info = await job.info()
    assert info.due_at is not None and info.task == stamp.name
    ran = await job.result(timeout=10)
    assert ran - sent >= 0.55
    assert ran - sent < 0.6 + 1.5  # the pump sleeps at most 0.5 s


async def test_eta_must_be_aware_and_is_honoured(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def stamp() -> float:
        return time.time()

    with pytest.raises(aioq.ConfigurationError, match="timezone-aware"):
        stamp.with_options(eta=dt.datetime.now())
    with pytest.raises(aioq.ConfigurationError, match="either delay or eta"):
        stamp.with_options(delay=1, eta=dt.datetime.now(dt.UTC))
    await workers.start(app)
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
    job = await app.send(stamp.name, eta=eta)
    assert await job.result(timeout=10) >= eta.timestamp() - 0.01


@on_cluster_too
async def test_retries_until_success(app: aioq.App, workers: WorkerRunner) -> None:
    seen: list[int] = []

    @app.task(retries=3, retry_backoff=0.01)
    async def flaky(ctx: aioq.Context) -> int:
        seen.append(ctx.attempt)
        if len(seen) < 3:
            raise ConnectionError(f"try {len(seen)}")
        return len(seen)

    await workers.start(app)
    job = await flaky.kiq()
    assert await job.result(timeout=10) == 3
    assert seen == [1, 2, 3]
    info = await job.info()
    assert info.attempts == 3 and info.state is aioq.JobState.SUCCEEDED


async def test_retries_used_up_fail_with_the_last_error(
    app: aioq.App, workers: WorkerRunner
) -> None:
    calls = 0

    @app.task(retries=2, retry_backoff=0.01)
    async def always() -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"failure {calls}")

    await workers.start(app)
    job = await always.kiq()
    with pytest.raises(aioq.TaskFailed, match="failure 3"):
        await job.result(timeout=10)
    assert calls == 3
    assert (await job.info()).attempts == 3


async def test_retry_on_filters_exceptions(app: aioq.App, workers: WorkerRunner) -> None:
    calls = 0

    @app.task(retries=5, retry_backoff=0.01, retry_on=(KeyError,))
    async def picky() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("not retried")

    await workers.start(app)
    with pytest.raises(aioq.TaskFailed, match="not retried"):
        await (await picky.kiq()).result(timeout=10)
    assert calls == 1


@on_cluster_too
async def test_per_call_retries_and_retry_state(app: aioq.App, workers: WorkerRunner) -> None:
    calls = 0

    @app.task
    async def slow_to_work() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise aioq.Retry("not yet", delay=0.8)
        return "done"

    await workers.start(app)
    job = await slow_to_work.with_options(retries=1).kiq()
    for _ in range(200):
        if await job.state() is aioq.JobState.RETRYING:
            break
        await asyncio.sleep(0.01)
    info = await job.info()
    assert info.state is aioq.JobState.RETRYING
    assert info.error is not None and info.error.type == "Retry" and info.due_at is not None
    assert await job.result(timeout=10) == "done"
    # Without retries left, Retry fails the job.
    calls = 0
    with pytest.raises(aioq.TaskFailed) as err:
        await (await slow_to_work.kiq()).result(timeout=10)
    assert err.value.type == "Retry"


async def test_a_timeout_is_a_retryable_failure(app: aioq.App, workers: WorkerRunner) -> None:
    calls = 0

    @app.task(timeout=0.1, retries=1, retry_backoff=0.01)
    async def sometimes_slow() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return calls

    await workers.start(app)
    assert await (await sometimes_slow.kiq()).result(timeout=10) == 2


async def test_sync_task_timeout(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task(timeout=0.2)
    def blocking() -> None:
        time.sleep(1.0)

    await workers.start(app)
    started = time.monotonic()
    with pytest.raises(aioq.TaskFailed, match="timed out after 0.2s"):
        await (await blocking.kiq()).result(timeout=10)
    assert time.monotonic() - started < 0.9  # failed at once, the thread runs on


async def test_many_workers_move_each_delayed_message_once(
    app: aioq.App, workers: WorkerRunner
) -> None:
    runs: dict[int, int] = {}

    @app.task
    async def count(i: int) -> None:
        runs[i] = runs.get(i, 0) + 1

    for _ in range(3):
        await workers.start(app)
    jobs = await count.with_options(delay=0.3).kiq_many([(i,) for i in range(300)])
    await asyncio.gather(*(j.result(timeout=15) for j in jobs))
    assert runs == {i: 1 for i in range(300)}


async def test_max_deliveries_dead_letters_a_message_that_keeps_coming_back(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task(max_deliveries=3)
    async def poison() -> None: ...

    job = await poison.kiq()
    stream = app.keys.stream("default")
    sync_redis.xgroup_create(stream, "workers", id="0", mkstream=True)
    [[_, [(entry_id, _)]]] = sync_redis.xreadgroup("workers", "ghost-1", {stream: ">"})
    for n in range(2, 4):  # two more workers "died" holding it: 3 deliveries so far
        sync_redis.xclaim(stream, "workers", f"ghost-{n}", 0, [entry_id])
    await workers.start(app)
    with pytest.raises(aioq.TaskFailed) as err:
        await job.result(timeout=10)
    assert err.value.type == "MaxDeliveries"
    assert "delivered 4 times, over max_deliveries=3" in err.value.message
    [(_, fields)] = sync_redis.xrange(app.keys.dead("default"))
    assert fields[b"reason"].startswith(b"delivered 4 times")


async def test_an_oversized_message_in_the_stream_is_dead_lettered(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    small = aioq.App(app.url, prefix=app.prefix, max_message_bytes=2000, visibility_timeout=2.0)

    @small.task
    async def take(blob: str) -> int:
        return len(blob)

    payload = encode(Message("big", take.name, "default", ["x" * 5000], {}, 0))
    sync_redis.xadd(small.keys.stream("default"), {"m": payload})
    ok = await take.kiq("fine")
    await workers.start(small)
    assert await ok.result(timeout=10) == 4
    for _ in range(100):
        if sync_redis.xlen(small.keys.dead("default")):
            break
        await asyncio.sleep(0.02)
    [(_, fields)] = sync_redis.xrange(small.keys.dead("default"))
    assert fields[b"reason"].startswith(b"message too large")
    assert msgspec.msgpack.decode(fields[b"m"])[0] == "big"
    await small.aclose()
