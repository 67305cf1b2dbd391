"""Fencing and the life of a job's record (issue: Reliability II).

A stale worker never commits: its outcome, ack and progress are checked inside
the scripts against the attempt's token (worker + attempt) and the delivery
(consumer + delivery count). Records of live jobs never expire; a task that
cannot encode its result fails once; a workflow ends at an aborted step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis

import aioq
from tests.chaos.harness import FreezingProxy
from tests.conftest import WorkerRunner, both_record_modes


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[FreezingProxy]:
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    p = FreezingProxy(int(port))
    await p.start()
    yield p
    await p.stop()


def _via(redis_url: str, port: int) -> str:
    base, _, db = redis_url.rpartition("/")
    host = base.rsplit(":", 1)[0]
    return f"{host}:{port}/{db}"


@pytest.mark.parametrize("batch_records", [True, False], ids=["batch-records", "per-job-records"])
async def test_a_partitioned_workers_late_completion_never_commits(
    redis_url: str, prefix: str, proxy: FreezingProxy, workers: WorkerRunner, batch_records: bool
) -> None:
    """A worker behind a TCP proxy freezes as its job returns; another worker takes
    the job over and runs it; when the partition heals, the stale completion
    reaches Redis. It must neither become the record nor ack (and so cancel) the
    entry the other worker is running."""
    runs: list[str] = []
    finished: list[str] = []

    def make_app(url: str) -> tuple[aioq.App, aioq.Task[[], str]]:
        app = aioq.App(url, prefix=prefix, visibility_timeout=2.0)
        app.broker.batch_records = batch_records  # type: ignore[attr-defined]

        @app.task(name="work")
        async def work(ctx: aioq.Context) -> str:
            runs.append(ctx.worker_id)
            first = len(runs) == 1
            await asyncio.sleep(0.6 if first else 3.0)
            finished.append(ctx.worker_id)
            return "zombie" if first else "owner"

        return app, work

    stale_app, _ = make_app(_via(redis_url, proxy.port))
    owner_app, work = make_app(redis_url)
    stale = await workers.start(stale_app, name="stale")
    job = await work.kiq()
    while not runs:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    proxy.freeze()  # the stale worker's job returns while it is cut off
    owner = await workers.start(owner_app, name="owner")
    deadline = time.monotonic() + 15
    while len(runs) < 2:  # the owner takes the job over after the lease lapses
        assert time.monotonic() < deadline, "the job was not taken over"
        await asyncio.sleep(0.05)
    assert runs == ["stale", "owner"]
    await asyncio.sleep(0.5)
    proxy.thaw()  # the stale completion (outcome + ack) now reaches Redis
    assert await job.result(timeout=15) == "owner"
    info = await job.info()
    assert info.worker == "owner" and info.attempts == 2
    assert finished == ["stale", "owner"]  # the owner's run was not cancelled
    # the stale worker is alive and works on
    await asyncio.sleep(0.5)
    assert not any(t.done() for w, t in workers.running if w is stale)
    await workers.stop(owner)
    assert await (await work.kiq()).result(timeout=15) == "owner"
    await stale_app.aclose()
    await owner_app.aclose()


async def test_a_record_of_a_running_job_never_expires(
    redis_url: str, prefix: str, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    """A task running longer than result_ttl still reads 'running'; its record
    gets its TTL when it ends."""
    app = aioq.App(redis_url, prefix=prefix, visibility_timeout=2.0, result_ttl=1.0)

    @app.task
    async def long() -> int:
        await asyncio.sleep(2.5)
        return 7

    await workers.start(app)
    job = await long.kiq()
    while await job.state() != aioq.JobState.RUNNING:
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.5)  # past result_ttl
    assert await job.state() == aioq.JobState.RUNNING
    assert sync_redis.pttl(app.keys.job(job.id)) == -1  # no expiry while it lives
    assert await job.result(timeout=10) == 7
    assert 0 < sync_redis.pttl(app.keys.job(job.id)) <= 1000
    await app.aclose()


async def test_progress_cannot_recreate_an_ended_record(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    kept: list[aioq.Context] = []

    @app.task
    async def reporter(ctx: aioq.Context) -> None:
        kept.append(ctx)
        await ctx.progress(1, 2)

    await workers.start(app)
    job = await reporter.kiq()
    await job.result(timeout=10)
    assert (await job.info()).progress is not None
    sync_redis.delete(app.keys.job(job.id))  # as if it had expired
    await kept[0].progress(2, 2)  # a late report of the ended attempt
    assert not sync_redis.exists(app.keys.job(job.id))


@both_record_modes
async def test_unencodable_results_fail_once(app: aioq.App, workers: WorkerRunner) -> None:
    """2**70 cannot be msgpack-encoded, and an exception whose str() fails cannot
    be described: both are the task's failure, run once, never redelivered."""
    calls = {"big": 0, "rude": 0}

    class Rude(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    @app.task
    async def big() -> int:
        calls["big"] += 1
        return 2**70

    @app.task
    async def rude() -> None:
        calls["rude"] += 1
        raise Rude()

    await workers.start(app)
    with pytest.raises(aioq.TaskFailed, match="cannot be encoded") as failed:
        await (await big.kiq()).result(timeout=10)
    assert failed.value.type == "UnencodableResult"
    with pytest.raises(aioq.TaskFailed) as raised:
        await (await rude.kiq()).result(timeout=10)
    assert raised.value.type == "Rude" and "unprintable" in raised.value.message
    await asyncio.sleep(2.5)  # longer than the lease: nothing comes back
    assert calls == {"big": 1, "rude": 1}


async def test_aborting_a_chain_step_ends_the_chain(app: aioq.App, workers: WorkerRunner) -> None:
    started = asyncio.Event()
    ran: list[int] = []

    @app.task
    async def first(x: int) -> int:
        started.set()
        await asyncio.sleep(30)
        return x

    @app.task
    async def then(x: int) -> int:
        ran.append(x)
        return x + 1

    await workers.start(app, concurrency=1)
    # a running step is aborted: the steps after it end aborted at once
    running = await aioq.chain(first.s(1), then.s(), then.s()).kiq()
    await started.wait()
    # a queued step (the only slot is busy) is aborted before it starts: when it
    # comes up it is skipped, and what follows it ends aborted too
    queued = await aioq.chain(then.s(10), then.s()).kiq()
    assert await queued.parent.abort()
    assert await running.parent.parent.abort()
    for step in (running.parent.parent, running.parent, running, queued.parent, queued):
        with pytest.raises(aioq.JobAborted):
            await step.result(timeout=10)
    assert ran == []


async def test_aborting_a_chord_member_ends_the_chord(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    callbacks: list[list[int]] = []

    @app.task
    async def member(x: int) -> int:
        await asyncio.sleep(0.2 if x else 30)
        return x

    @app.task
    async def total(values: list[int]) -> int:
        callbacks.append(values)
        return sum(values)

    await workers.start(app)
    group_handle = aioq.group([member.s(0), member.s(1), member.s(2)])
    handle = await aioq.chord(group_handle, total.s()).kiq()
    slow = handle.parent.jobs[0]
    while await slow.state() != aioq.JobState.RUNNING:
        await asyncio.sleep(0.02)
    assert await slow.abort()
    with pytest.raises(aioq.JobAborted):
        await handle.result(timeout=10)
    assert await handle.parent.jobs[1].result(timeout=10) == 1
    await asyncio.sleep(0.5)
    assert callbacks == []


async def test_chord_members_far_apart_beyond_result_ttl(
    redis_url: str, prefix: str, workers: WorkerRunner
) -> None:
    """The barrier lives as long as its workflow, not result_ttl."""
    app = aioq.App(redis_url, prefix=prefix, visibility_timeout=2.0, result_ttl=0.5)

    @app.task
    async def member(delay: float) -> float:
        await asyncio.sleep(delay)
        return delay

    @app.task
    async def total(values: list[float]) -> float:
        return sum(values)

    await workers.start(app)
    handle = await aioq.chord([member.s(0.0), member.s(2.0)], total.s()).kiq()
    assert await handle.result(timeout=15) == 2.0
    await app.aclose()


@both_record_modes
async def test_a_dead_lettered_unique_job_releases_its_lock(
    app: aioq.App, workers: WorkerRunner
) -> None:
    """Every end of a job releases its unique lock: a dead letter too."""

    @app.task(unique_for=60)
    async def typed(x: int) -> int:
        return x

    await workers.start(app)
    first = await typed.kiq("not an int")  # type: ignore[arg-type]
    with pytest.raises(aioq.TaskFailed, match="invalid arguments"):
        await first.result(timeout=10)
    second = await typed.kiq("not an int")  # type: ignore[arg-type]
    assert second.id != first.id


async def test_handing_back_never_takes_an_entry_from_its_new_owner(
    app: aioq.App, sync_redis: redis.Redis
) -> None:
    """Giving entries back (shutdown, a failed start) only touches entries this
    worker still holds: one another worker took over meanwhile stays with it."""
    from redis.asyncio import Redis

    from aioq._transport.scripts import SCRIPTS
    from aioq._transport.streams import Streams

    stream = app.keys.stream("default")
    sync_redis.xgroup_create(stream, "workers", id="0", mkstream=True)
    first = sync_redis.xadd(stream, {"m": b"x"})
    second = sync_redis.xadd(stream, {"m": b"y"})
    sync_redis.xreadgroup("workers", "stale", {stream: ">"})
    sync_redis.xclaim(stream, "workers", "owner", 0, [first], justid=True)  # taken over
    client = Redis.from_url(app.url)
    try:
        await SCRIPTS.load_all(client)
        await Streams(client, app.keys).release(stream, "stale", [first, second], 60_000)
    finally:
        await client.aclose()
    pending = {
        p["message_id"]: p["consumer"]
        for p in sync_redis.xpending_range(stream, "workers", "-", "+", 10)
    }
    assert pending == {first: b"owner", second: b"stale"}
