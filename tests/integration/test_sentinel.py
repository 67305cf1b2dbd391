"""aioq on Redis Sentinel, from the URL alone: ``redis+sentinel://…/service``.

``redis_sentinel_url`` (tests/conftest.py, scripts/with_sentinel.py) is a real
primary + replica watched by 3 sentinels on loopback ports. These tests run the
core path there (kiq → worker → result, retries, delays, a cron tick, the
heartbeat's registry entry) and check what the connection does on a failover;
the failover under load, with an execution oracle, is tests/chaos/test_sentinel.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from redis.sentinel import Sentinel

import aioq
from aioq._transport.connection import connect, connect_sync
from aioq._transport.sentinel import MASTER_RECHECK, parse
from tests.conftest import WorkerRunner


def _master(url: str) -> redis.Redis:
    target = parse(url)
    assert target is not None
    return Sentinel(list(target.sentinels)).master_for(target.service)


@pytest.fixture
def sentinel_app(redis_sentinel_url: str) -> Iterator[aioq.App]:
    """An App on the Sentinel deployment with its own prefix, keys deleted after."""
    prefix = f"aioqtest-{uuid.uuid4().hex[:10]}"
    app = aioq.App(redis_sentinel_url, prefix=prefix, visibility_timeout=2.0)
    yield app
    client = _master(redis_sentinel_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


@pytest.fixture
async def closing(sentinel_app: aioq.App) -> AsyncIterator[aioq.App]:
    yield sentinel_app
    await sentinel_app.aclose()


async def test_core_path_on_sentinel(closing: aioq.App, workers: WorkerRunner) -> None:
    """kiq → worker → result, a retry, a delay and a cron tick, all through the
    sentinels; the worker's heartbeat thread (its own synchronous Sentinel client)
    writes the registry entry."""
    app = closing
    attempts: dict[str, int] = {}
    ticks: list[str] = []

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(retries=3, retry_backoff=0.05)
    async def flaky(ctx: aioq.Context) -> int:
        attempts[ctx.job_id] = attempts.get(ctx.job_id, 0) + 1
        if attempts[ctx.job_id] < 3:
            raise RuntimeError("not yet")
        return attempts[ctx.job_id]

    @app.task
    async def beat(ctx: aioq.Context) -> str:
        ticks.append(ctx.job_id)
        return ctx.job_id

    app.schedule(beat.s(), cron="* * * * * *", name="beat")  # every second
    await workers.start(app, scheduler=True)

    assert await (await add.kiq(1, 2)).result(timeout=10) == 3
    retried = await flaky.kiq()
    assert await retried.result(timeout=10) == 3
    assert attempts == {retried.id: 3}

    sent = time.monotonic()
    delayed = await add.with_options(delay=0.5).kiq(2, 3)
    assert await delayed.state() == "scheduled"
    assert await delayed.result(timeout=10) == 5
    assert time.monotonic() - sent >= 0.5

    deadline = time.monotonic() + 10
    while not ticks:
        assert time.monotonic() < deadline, "no cron tick within 10 s"
        await asyncio.sleep(0.05)
    assert await app.job(ticks[0]).result(timeout=5) == ticks[0]
    assert ticks[0].startswith("beat@")

    deadline = time.monotonic() + 10
    while not (registered := await app.workers()):
        assert time.monotonic() < deadline, "the heartbeat wrote no registry entry"
        await asyncio.sleep(0.1)
    assert len(registered) == 1


async def test_sentinel_clients_follow_the_master(
    sentinel_app: aioq.App, redis_sentinel_url: str
) -> None:
    """The async and the sync client both reach the node the sentinels name as
    master (not the replica), with the URL's database."""
    target = parse(redis_sentinel_url)
    assert target is not None
    manager = Sentinel(list(target.sentinels))
    host, port = manager.discover_master(target.service)

    client = connect(redis_sentinel_url)
    sync_client = connect_sync(redis_sentinel_url)
    try:
        role = await client.info("replication")
        assert role["role"] == "master"
        assert (await client.info("server"))["tcp_port"] == port
        assert sync_client.info("server")["tcp_port"] == port
        key = f"{sentinel_app.prefix}:probe"
        await client.set(key, b"1")
        assert sync_client.get(key) == b"1"
    finally:
        await client.aclose()
        sync_client.close()
        for node in manager.sentinels:
            node.close()
    assert host == "127.0.0.1"


async def test_a_failover_is_an_outage_the_client_rides_out(
    sentinel_deployment: Any,
) -> None:
    """SENTINEL FAILOVER: the old master kills its clients and turns replica. The
    app's client gets an outage error (or nothing), never a wrong answer, and
    reaches the new master once the sentinels have switched."""
    deployment = sentinel_deployment
    app = aioq.App(deployment.url, prefix=f"aioqtest-{uuid.uuid4().hex[:10]}")

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    try:
        first = await add.kiq(1, 1)
        old = deployment.primary()
        deployment.failover()
        deadline = time.monotonic() + 20
        while deployment.primary() in (old, None):
            assert time.monotonic() < deadline, "the sentinels did not switch"
            await asyncio.sleep(0.05)
        # The old master is still up and writable (the sentinels demote it 8-20 s
        # later); the pool asks the sentinels again within MASTER_RECHECK.
        await asyncio.sleep(MASTER_RECHECK)
        outages = 0
        while True:
            try:
                second = await add.kiq(2, 2)
                break
            except aioq.BrokerUnavailable:
                outages += 1
                assert time.monotonic() < deadline, "no send reached the new master"
                await asyncio.sleep(0.1)
        client = app.broker.redis
        assert (await client.info("server"))["tcp_port"] == deployment.primary()
        # the first job was replicated before the failover: it is still queued
        assert await app.job(first.id).state() == "queued"
        assert await app.job(second.id).state() == "queued"
        assert outages <= 50
    finally:
        await app.aclose()


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port)


@pytest.mark.parametrize("min_replicas", [0, 1], ids=["default", "min-replicas-to-write-1"])
async def test_a_write_acknowledged_by_a_replaced_master_is_lost(
    sentinel_deployment: Any, min_replicas: int
) -> None:
    """Replication is asynchronous: what a master acknowledges after its replica
    was promoted never reaches the new master, and is gone once the old one is
    demoted (it resyncs from the new one). Here a producer still talks to the old
    master after a ``SENTINEL FAILOVER`` (a client cut off from the sentinels, or
    one that has not asked them yet): its send is acknowledged, and lost.

    With ``min-replicas-to-write 1`` the old master has no replica left after the
    promotion and refuses the write (``NOREPLICAS``): the producer gets
    ``BrokerUnavailable``, nothing acknowledged is lost."""
    deployment = sentinel_deployment
    old = deployment.primary()
    new = next(p for p in deployment.data_ports if p != old)
    for port in (old, new):
        node = _node(port)
        node.config_set("min-replicas-to-write", min_replicas)
        node.config_set("min-replicas-max-lag", 1)
        node.close()
    prefix = f"aioqtest-{uuid.uuid4().hex[:10]}"
    app = aioq.App(deployment.url, prefix=prefix)
    stale = aioq.App(f"redis://127.0.0.1:{old}/0", prefix=prefix)

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    try:
        before = await add.kiq(1, 1)  # replicated before the failover
        deployment.failover()
        deadline = time.monotonic() + 20
        while deployment.primary() != new:
            assert time.monotonic() < deadline, "the sentinels did not switch"
            await asyncio.sleep(0.05)

        acknowledged: list[str] = []
        refused = 0
        try:
            acknowledged.append((await stale.send(add.name, (2, 2))).id)
        except aioq.BrokerUnavailable as exc:
            assert "NOREPLICAS" in str(exc)
            refused += 1

        # What the sentinels do 8-20 s later (+convert-to-slave), done at once: the
        # old master becomes a replica of the new one and resyncs from it.
        node = _node(old)
        node.replicaof("127.0.0.1", new)
        node.close()
        deployment.wait_settled()

        master = _node(new)
        try:
            lost = [j for j in acknowledged if not master.exists(app.keys.job(j))]
            assert master.exists(app.keys.job(before.id))
            print(
                f"\n[sentinel] min-replicas-to-write={min_replicas}: acknowledged by "
                f"the replaced master {len(acknowledged)}, lost {len(lost)}, refused {refused}"
            )
        finally:
            master.close()
        if min_replicas:
            assert (acknowledged, refused) == ([], 1)
        else:
            assert refused == 0 and lost == acknowledged and len(lost) == 1
            assert await app.job(lost[0]).state() == "queued"  # an unknown id, for ever
    finally:
        await stale.aclose()
        await app.aclose()


async def test_result_waiters_hear_the_new_master_after_a_failover(
    sentinel_deployment: Any, workers: WorkerRunner
) -> None:
    """The waiters' pub/sub connection is made outside the pool: after SENTINEL
    FAILOVER it would stay on the old master (up and writable, but no longer fed
    by the workers' PUBLISH) until the sentinels demote it, and every result would
    come only from the slow record re-check. It moves to the new master too."""
    deployment = sentinel_deployment
    app = aioq.App(deployment.url, prefix=f"aioqtest-{uuid.uuid4().hex[:10]}")

    @app.task
    async def slow(ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return ms

    try:
        await workers.start(app)
        assert await (await slow.kiq(1)).result(timeout=10) == 1  # subscribed on the old master
        old = deployment.primary()
        deployment.failover()
        deadline = time.monotonic() + 20
        while deployment.primary() in (old, None):
            assert time.monotonic() < deadline, "the sentinels did not switch"
            await asyncio.sleep(0.05)
        # every client moves within MASTER_RECHECK (one waiter keeps the reader busy)
        keep = asyncio.create_task(app.job("nobody").result(timeout=30))
        await asyncio.sleep(3 * MASTER_RECHECK)
        for _ in range(3):
            while True:
                try:
                    job = await slow.kiq(300)
                    break
                except aioq.BrokerUnavailable:
                    assert time.monotonic() < deadline, "no send reached the new master"
                    await asyncio.sleep(0.1)
            began = time.monotonic()
            assert await job.result(timeout=10) == 300
            # notified, not found by the 5 s re-check of the record
            assert time.monotonic() - began < 2.0
        keep.cancel()
    finally:
        await workers.stop_all()
        await app.aclose()
