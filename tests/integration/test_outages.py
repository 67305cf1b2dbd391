"""Redis conditions that are not failures of aioq (issue 10, items 16–18).

BUSY (someone else's slow script) and LOADING (a restart with a big dataset)
are outages: the worker logs them, backs off and carries on, losing nothing.
An eviction policy other than ``noeviction`` is reported at start (refused with
``strict``). Consumers of dead workers that hold nothing are removed.

Each test runs its own private ``redis-server`` (they change its configuration).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import aioq
from aioq._worker import lease
from tests.chaos.harness import RedisServer
from tests.conftest import WorkerRunner

pytestmark = pytest.mark.timeout(120)

BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
  t = redis.call('TIME')
until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000
return 1
"""


@pytest.fixture
def server() -> Iterator[RedisServer]:
    private = RedisServer(aof=True)
    yield private
    private.stop()


@pytest.fixture
async def private_app(server: RedisServer) -> AsyncIterator[aioq.App]:
    app = aioq.App(server.url, prefix="outage", visibility_timeout=2.0)
    yield app
    await app.aclose()


def busy_for(server: RedisServer, seconds: float) -> threading.Thread:
    """Run a script that keeps Redis busy for ``seconds`` (from another client)."""
    # A socket timeout longer than the script: redis-py's default (5 s) would resend it.
    client = redis.Redis(port=server.port, socket_timeout=60)
    client.config_set("busy-reply-threshold", 100)

    def run() -> None:
        try:
            while True:
                try:
                    client.eval(BUSY_SCRIPT, 0, int(seconds * 1000))
                    return
                except redis.ResponseError as exc:  # a worker's own script was running
                    if "BUSY" not in str(exc):
                        raise
                    time.sleep(0.01)
        finally:
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def outcome_states(server: RedisServer, app: aioq.App, ids: list[str]) -> list[bytes | None]:
    client = server.client()
    try:
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(app.keys.job(job_id), "state")
        return list(pipe.execute())
    finally:
        client.close()


async def wait_final(
    server: RedisServer, app: aioq.App, ids: list[str], timeout: float
) -> list[bytes | None]:
    deadline = time.monotonic() + timeout
    states: list[bytes | None] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            states = outcome_states(server, app, ids)
            if all(s == b"succeeded" for s in states):
                break
        await asyncio.sleep(0.1)
    return states


def alive(workers: WorkerRunner) -> bool:
    for _, task in workers.running:
        if task.done():
            task.result()  # raises what killed it
            return False
    return True


def define_counting_task(app: aioq.App, runs: dict[str, int]) -> Any:
    @app.task
    async def job(ctx: aioq.Context, ms: int) -> int:
        runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
        await asyncio.sleep(ms / 1000)
        return ms

    return job


@pytest.mark.slow
async def test_busy_redis_is_an_outage_not_a_crash(
    server: RedisServer,
    private_app: aioq.App,
    workers: WorkerRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another client's long script makes Redis answer BUSY for 3 s while jobs
    run: the worker stays up and every job ends once, none lost."""
    caplog.set_level(logging.INFO, "aioq")
    runs: dict[str, int] = {}
    job = define_counting_task(private_app, runs)
    await workers.start(private_app, concurrency=8)
    jobs = await job.kiq_many([(5,)] * 1000)
    ids = [j.id for j in jobs]
    while len(runs) < 20:
        await asyncio.sleep(0.01)
    busy = busy_for(server, 3.0)
    await asyncio.sleep(0.5)
    assert busy.is_alive()
    busy.join(10)
    states = await wait_final(server, private_app, ids, timeout=60)
    assert alive(workers), "the worker died"
    assert states == [b"succeeded"] * len(ids)
    assert all(runs.get(i) == 1 for i in ids), sorted(runs.values())[-5:]
    assert "BUSY" in caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.slow
async def test_loading_redis_is_an_outage_not_a_crash(
    server: RedisServer,
    private_app: aioq.App,
    workers: WorkerRunner,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis restarts and spends seconds loading its dataset (LOADING replies)
    while a worker has jobs: the worker stays up and nothing is lost."""
    caplog.set_level(logging.INFO, "aioq")
    client = server.client()
    for i in range(0, 40_000, 2_000):
        client.mset({f"filler:{j}": "x" for j in range(i, i + 2_000)})
    client.bgrewriteaof()  # the filler goes into the base file the restart loads
    while client.info("persistence")["aof_rewrite_in_progress"]:
        await asyncio.sleep(0.05)
    client.close()
    runs: dict[str, int] = {}
    job = define_counting_task(private_app, runs)
    await workers.start(private_app, concurrency=8)
    jobs = await job.kiq_many([(50,)] * 200)
    ids = [j.id for j in jobs]
    while len(runs) < 20:
        await asyncio.sleep(0.01)
    server.kill()
    server.persistence = [*server.persistence, "--key-load-delay", "50"]
    restart = asyncio.create_task(asyncio.to_thread(server.start))  # returns once loaded
    await asyncio.sleep(0.3)
    # A worker started while Redis loads: Redis is there, only not ready yet. It
    # waits for the load, however long (connect_timeout counts unreachable time).
    late = await workers.start(private_app, concurrency=8, connect_timeout=0.5)
    await restart
    assert late.ready.is_set()
    loaded = await asyncio.to_thread(Path(server.dir, "redis.log").read_text)
    seconds = float(re.findall(r"DB loaded from append only file: ([0-9.]+) seconds", loaded)[-1])
    states = await wait_final(server, private_app, ids, timeout=90)
    assert seconds > 1.0, "the restart loaded too fast to test anything"
    assert alive(workers), "the worker died"
    assert states == [b"succeeded"] * len(ids)
    assert all(runs.get(i, 0) >= 1 for i in ids)


async def test_an_evicting_redis_is_reported_and_refused_when_strict(
    server: RedisServer, private_app: aioq.App, caplog: pytest.LogCaptureFixture
) -> None:
    admin = server.client()
    admin.config_set("maxmemory-policy", "allkeys-lru")
    caplog.set_level(logging.WARNING, "aioq")

    async def noop() -> None:
        return None

    private_app.task(name="noop")(noop)  # strict also refuses a worker with no task
    worker = aioq.Worker(private_app, block=0.1)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.ready.wait(), 10)
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert "maxmemory-policy is allkeys-lru" in caplog.text
    assert "noeviction" in caplog.text

    with pytest.raises(aioq.ConfigurationError, match="allkeys-lru"):
        await asyncio.wait_for(aioq.Worker(private_app, strict=True).run(), 10)

    # CONFIG refused by an ACL: the policy is read from INFO memory instead.
    admin.acl_setuser(
        "limited",
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-config"],
    )
    admin.close()
    limited = aioq.App(
        f"redis://limited:secret@127.0.0.1:{server.port}/0",
        prefix="outage",
        visibility_timeout=2.0,
    )
    limited.task(name="noop")(noop)
    try:
        with pytest.raises(aioq.ConfigurationError, match="allkeys-lru"):
            await asyncio.wait_for(aioq.Worker(limited, strict=True).run(), 10)
    finally:
        await limited.aclose()


async def test_noeviction_is_accepted_when_strict(
    private_app: aioq.App, workers: WorkerRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "aioq")

    @private_app.task
    async def add(x: int, y: int) -> int:
        return x + y

    await workers.start(private_app, strict=True)
    assert await (await add.kiq(1, 2)).result(timeout=10) == 3
    assert "maxmemory-policy" not in caplog.text


async def test_idle_consumers_without_pending_entries_are_removed(
    server: RedisServer, workers: WorkerRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consumers of dead workers pile up in the group unless removed: one idle past
    the bound that holds nothing goes; one that still holds a message stays (its
    entry is recovered first); a live worker is unaffected."""
    monkeypatch.setattr(lease, "CONSUMER_IDLE_MIN", 0.5, raising=False)
    monkeypatch.setattr(lease, "CONSUMER_IDLE_LEASES", 0, raising=False)
    monkeypatch.setattr(lease, "SWEEP_EVERY", 0.2, raising=False)
    app = aioq.App(server.url, prefix="sweep", visibility_timeout=60.0)

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    client = server.client()
    stream = app.keys.stream("default")
    client.xgroup_create(stream, "workers", id="0", mkstream=True)
    client.xgroup_createconsumer(stream, "workers", "ghost-empty")
    held = await add.kiq(1, 1)
    assert client.xreadgroup("workers", "ghost-holding", {stream: ">"}, count=1)
    await asyncio.sleep(0.6)
    try:
        live = await workers.start(app)
        deadline = time.monotonic() + 10
        names: set[str] = set()
        while time.monotonic() < deadline:
            names = {c["name"].decode() for c in client.xinfo_consumers(stream, "workers")}
            if "ghost-empty" not in names:
                break
            await asyncio.sleep(0.1)
        assert "ghost-empty" not in names
        assert "ghost-holding" in names  # its message is still pending there
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5
        await asyncio.sleep(1.0)  # a few more sweeps while the live worker reads
        names = {c["name"].decode() for c in client.xinfo_consumers(stream, "workers")}
        assert {"ghost-holding", live.id} <= names
        assert client.xpending(stream, "workers")["pending"] == 1
        assert await held.state() is aioq.JobState.QUEUED
    finally:
        client.close()
        await workers.stop_all()
        await app.aclose()
