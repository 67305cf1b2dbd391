"""Aborting jobs, and working with dead letters from Python and the CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

import aioq
from tests.conftest import WorkerRunner, on_cluster_too

ROOT = Path(__file__).resolve().parents[2]


async def test_abort_a_queued_job(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    runs = 0

    @app.task
    async def work() -> None:
        nonlocal runs
        runs += 1

    job = await work.kiq()
    assert await job.abort() is True
    assert await job.state() is aioq.JobState.ABORTED
    with pytest.raises(aioq.JobAborted):
        await job.result(timeout=1)
    await workers.start(app)
    later = await work.kiq()
    await later.result(timeout=10)
    assert runs == 1  # only the second job ran
    assert sync_redis.xlen(app.keys.stream("default")) == 0


@on_cluster_too
async def test_abort_a_scheduled_job(app: aioq.App, workers: WorkerRunner) -> None:
    runs = 0

    @app.task
    async def work() -> None:
        nonlocal runs
        runs += 1

    await workers.start(app)
    job = await work.with_options(delay=0.3).kiq()
    assert await job.abort()
    await asyncio.sleep(1.0)
    assert runs == 0 and await job.state() is aioq.JobState.ABORTED


async def test_abort_a_running_job(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    started = asyncio.Event()
    cancelled = False

    @app.task
    async def long() -> None:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled = True
            raise

    worker = await workers.start(app)
    job = await long.kiq()
    await asyncio.wait_for(started.wait(), 10)
    t0 = time.monotonic()
    assert await job.abort()
    with pytest.raises(aioq.JobAborted):
        await job.result(timeout=5)
    while worker.running:
        await asyncio.sleep(0.01)
    assert time.monotonic() - t0 < 1.0
    assert cancelled
    assert sync_redis.xlen(app.keys.stream("default")) == 0
    assert await job.abort() is False  # already ended


@on_cluster_too
async def test_dead_letters_list_retry_purge(app: aioq.App, workers: WorkerRunner) -> None:
    await workers.start(app)
    unknown = await app.send("later.defined", args=[2])
    with pytest.raises(aioq.TaskFailed):
        await unknown.result(timeout=10)
    letters = await app.dead_letters()
    assert [(d.queue, d.job_id, d.task) for d in letters] == [
        ("default", unknown.id, "later.defined")
    ]
    assert letters[0].reason.startswith("unknown task") and letters[0].dead_at is not None

    # The fix ships: the task exists now. Re-drive the dead letter.
    @app.task(name="later.defined")
    async def later(x: int) -> int:
        return x * 10

    await workers.stop_all()
    await workers.start(app)
    assert await app.retry_dead("default") == 1
    assert await unknown.result(timeout=10) == 20
    assert await app.dead_letters() == []

    await app.send("nope", args=[])
    for _ in range(200):
        if await app.dead_letters():
            break
        await asyncio.sleep(0.02)
    assert await app.purge_dead() == 1
    assert await app.dead_letters() == []


def test_dead_cli(redis_url: str, prefix: str, sync_redis: redis.Redis) -> None:
    dead = f"{prefix}:{{default}}:dead"
    sync_redis.xadd(dead, {"m": b"junk", "reason": "undecodable message: test", "at": "0"})
    env = {**os.environ, "AIOQ_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}

    def aioq_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aioq", "dead", *args, "--prefix", prefix],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    listed = aioq_cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "undecodable message: test" in listed.stdout and "1 dead letter(s)" in listed.stderr
    entry_id = listed.stdout.split("\t")[1]
    assert aioq_cli("retry").returncode == 1  # needs -Q and ids or --all
    retried = aioq_cli("retry", entry_id, "-Q", "default")
    assert retried.returncode == 0 and "re-queued 1 message(s)" in retried.stdout
    assert sync_redis.xlen(f"{prefix}:{{default}}:stream") == 1
    # the same id again (it left the dead letters) and an id never dead-lettered
    for missing in (entry_id, "0-1"):
        again = aioq_cli("retry", missing, "-Q", "default")
        assert again.returncode == 1, again.stdout
        assert f"no dead letter {missing}" in again.stderr
    assert sync_redis.xlen(f"{prefix}:{{default}}:stream") == 1
    sync_redis.xadd(dead, {"m": b"junk2", "reason": "x"})
    purged = aioq_cli("purge")
    assert purged.returncode == 0 and "purged 1 dead letter(s)" in purged.stdout


async def test_abort_of_an_unknown_id_writes_nothing_and_the_id_stays_free(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    runs: list[int] = []

    @app.task
    async def work(n: int) -> int:
        runs.append(n)
        return n

    ghost = app.job("never-sent")
    assert await ghost.abort() is False
    assert list(sync_redis.scan_iter(match=f"{app.prefix}:*")) == []  # not even a tombstone
    assert await ghost.state() is aioq.JobState.QUEUED  # an unknown id reads `queued`
    # the id was never used: a job sent under it later runs
    job = await work.with_options(job_id="never-sent").kiq(7)
    assert job.id == "never-sent"
    await workers.start(app)
    assert await job.result(timeout=10) == 7
    assert runs == [7]


async def test_every_kind_of_send_can_be_aborted_before_it_runs(
    app: aioq.App, workers: WorkerRunner
) -> None:
    runs: list[int] = []

    @app.task
    async def work(n: int) -> int:
        runs.append(n)
        return n

    @app.task(unique_for=60.0)
    async def once(n: int) -> int:
        runs.append(n)
        return n

    jobs = [
        await work.kiq(1),
        await app.send(work.name, [2]),
        *(await work.kiq_many([(3,), (4,)])),
        await work.with_options(job_id="named").kiq(5),
        await once.kiq(6),
        await work.with_options(delay=0.2).kiq(7),
        await work.with_options(delay=0.2, job_id="named-later").kiq(8),
    ]
    handle = await aioq.chain(work.s(9), work.s()).kiq()  # the chain's last step
    for job in jobs:
        assert await job.abort() is True, job
        assert await job.state() is aioq.JobState.ABORTED
    assert await handle.abort() is True
    await workers.start(app)
    sentinel = await work.kiq(99)
    assert await sentinel.result(timeout=10) == 99
    await asyncio.sleep(0.6)  # past the delayed ones' due time
    for job in jobs:
        with pytest.raises(aioq.JobAborted):
            await job.result(timeout=1)
    with pytest.raises(aioq.JobAborted):
        await handle.result(timeout=5)
    assert sorted(runs) == [9, 99]  # the chain's first step ran; nothing aborted did


@on_cluster_too
async def test_a_scheduled_tick_and_a_redriven_job_can_be_aborted_before_they_run(
    app: aioq.App, workers: WorkerRunner
) -> None:
    """Jobs that no client sent — a periodic tick, a re-driven dead letter — get
    their `queued` record too, so abort() works on them before a worker does."""
    ran: list[str] = []

    @app.periodic(every=0.2, name="tick")
    async def tick() -> None:
        ran.append("tick")

    scheduler = aioq.Scheduler(app, connect_timeout=5)
    running = asyncio.create_task(scheduler.run())
    try:
        job_id = None
        for _ in range(100):  # no worker runs: the first tick's job waits, queued
            last = await app.broker.redis.hget(app.keys.schedule("default", "tick"), "last_job")
            if last:
                job_id = last.decode()
                break
            await asyncio.sleep(0.05)
        assert job_id is not None
        await asyncio.sleep(0.2)
        assert await app.job(job_id).abort()
    finally:
        scheduler.stop()
        await asyncio.wait_for(running, 10)

    dead = await app.send("not.yet.defined", args=[1])
    await workers.start(app)
    with pytest.raises(aioq.TaskFailed):
        await dead.result(timeout=10)
    await workers.stop_all()
    assert await app.retry_dead("default") == 1
    assert await dead.state() == aioq.JobState.QUEUED
    assert await dead.abort()

    @app.task(name="not.yet.defined")
    async def later(x: int) -> None:
        ran.append("redriven")

    await workers.start(app)
    with pytest.raises(aioq.JobAborted):
        await dead.result(timeout=10)
    with pytest.raises(aioq.JobAborted):
        await app.job(job_id).result(timeout=10)
    assert "redriven" not in ran
    assert (await app.job(job_id).info()).attempts == 0  # never started
