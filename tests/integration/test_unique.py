"""Unique jobs: an explicit job id, or unique_for on equal arguments."""

from __future__ import annotations

import asyncio

import pytest
import redis

import aioq
from aioq._core.message import unique_key
from tests.conftest import WorkerRunner, both_record_modes, on_cluster_too


async def test_explicit_job_id_under_concurrent_enqueue(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    runs: list[int] = []

    @app.task
    async def invoice(n: int) -> int:
        runs.append(n)
        await asyncio.sleep(0.2)
        return n

    send = invoice.with_options(job_id="invoice-42")
    jobs = await asyncio.gather(*(send.kiq(i) for i in range(200)))
    assert {j.id for j in jobs} == {"invoice-42"}
    assert sync_redis.xlen(app.keys.stream("default")) == 1  # one message, not 200
    await workers.start(app)
    value = await jobs[0].result(timeout=10)
    assert runs == [value]
    # while its result is kept, the id stays taken: the same job comes back
    again = await send.kiq(999)
    assert again.id == "invoice-42" and await again.result(timeout=5) == value
    assert runs == [value]
    await app.send(invoice.name, [7], job_id="invoice-42")
    assert runs == [value]


@on_cluster_too
async def test_unique_for_dedupes_equal_calls_while_pending(
    app: aioq.App, workers: WorkerRunner, broker_redis: redis.Redis
) -> None:
    runs: list[tuple[int, str]] = []
    gate = asyncio.Event()

    @app.task(unique_for=30.0)
    async def refresh(user: int, *, scope: str = "all") -> int:
        runs.append((user, scope))
        await gate.wait()
        return user

    first = await asyncio.gather(*(refresh.kiq(1) for _ in range(50)))
    assert len({j.id for j in first}) == 1
    # the calls that found the lock taken deleted the records of their unsent ids
    assert len(list(broker_redis.scan_iter(match=app.keys.job("*")))) == 1
    other = await refresh.kiq(2)  # other arguments: another job
    scoped = await refresh.kiq(1, scope="x")
    assert len({first[0].id, other.id, scoped.id}) == 3
    await workers.start(app)
    while len(runs) < 3:
        await asyncio.sleep(0.02)
    running_dup = await refresh.kiq(1)  # still running: the same job
    assert running_dup.id == first[0].id
    gate.set()
    assert await first[0].result(timeout=10) == 1
    # it ended: the next equal call is a new job
    later = await refresh.kiq(1)
    assert later.id != first[0].id
    assert await later.result(timeout=10) == 1
    assert sorted(runs) == [(1, "all"), (1, "all"), (1, "x"), (2, "all")]


async def test_unique_for_per_call_and_lock_expiry(app: aioq.App, sync_redis: redis.Redis) -> None:
    @app.task
    async def ping(n: int) -> int:
        return n

    a = await ping.with_options(unique_for=0.3).kiq(1)
    b = await ping.with_options(unique_for=0.3).kiq(1)
    c = await ping.kiq(1)  # no uniqueness asked for: a new job
    assert a.id == b.id != c.id
    await asyncio.sleep(0.4)  # the lock lapsed: no worker ran it, but it stops blocking
    d = await ping.with_options(unique_for=0.3).kiq(1)
    assert d.id != a.id
    with pytest.raises(aioq.ConfigurationError, match="unique_for"):
        ping.with_options(unique_for=0)
    with pytest.raises(aioq.ConfigurationError, match="job_id"):
        ping.with_options(job_id="")
    with pytest.raises(aioq.ConfigurationError, match="job_id"):
        await ping.with_options(job_id="x").kiq_many([(1,), (2,)])


@on_cluster_too
async def test_delayed_unique_job(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def later(n: int) -> int:
        return n

    send = later.with_options(job_id="later-1", delay=0.3)
    first = await send.kiq(1)
    second = await send.kiq(2)
    assert first.id == second.id == "later-1"
    assert await first.state() is aioq.JobState.SCHEDULED
    await workers.start(app)
    assert await first.result(timeout=10) == 1


@both_record_modes
async def test_a_failed_unique_job_releases_its_lock(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task(unique_for=60.0)
    async def boom(n: int) -> int:
        raise ValueError(f"no {n}")

    job = await boom.kiq(1)
    await workers.start(app)
    with pytest.raises(aioq.TaskFailed):
        await job.result(timeout=10)
    again = await boom.kiq(1)
    assert again.id != job.id


@both_record_modes
async def test_aborting_a_running_unique_job_releases_its_lock(
    app: aioq.App, workers: WorkerRunner
) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    @app.task(unique_for=60.0)
    async def sync_user(n: int) -> int:
        started.set()
        await gate.wait()
        return n

    await workers.start(app)
    job = await sync_user.kiq(1)
    await asyncio.wait_for(started.wait(), 10)
    assert await job.abort() is True
    again = await sync_user.kiq(1)  # right after: the lock is free, a new job
    assert again.id != job.id
    gate.set()
    assert await again.result(timeout=10) == 1
    with pytest.raises(aioq.JobAborted):
        await job.result(timeout=1)


async def test_aborting_a_queued_unique_job_releases_its_lock(
    app: aioq.App, sync_redis: redis.Redis
) -> None:
    @app.task(unique_for=60.0)
    async def refresh(n: int) -> int:
        return n

    first = await refresh.kiq(1)
    assert (await refresh.kiq(1)).id == first.id
    assert await first.abort() is True
    assert sync_redis.exists(app.keys.unique("default", unique_key(refresh.name, [1], {}))) == 0
    second = await refresh.kiq(1)
    assert second.id != first.id
    # an explicit job id stays taken after an abort, for as long as a result would be kept
    named = await refresh.with_options(job_id="report-7", result_ttl=120.0).kiq(2)
    assert await named.abort() is True
    assert (await refresh.with_options(job_id="report-7").kiq(3)).id == "report-7"
    assert 100_000 < sync_redis.pttl(app.keys.unique("default", "report-7")) <= 120_000
    assert await named.state() is aioq.JobState.ABORTED
