"""The core path as a Redis ACL user that may touch only the app's keys and
channels and run only the commands aioq needs (docs/security.md prints the line).

The user is created in a private redis-server of this test and deleted after.
The test also reads Redis' ACL LOG: not one command was refused along the way,
not even one whose refusal aioq would have survived."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

import aioq
from aioq.testing.redis import PrivateRedis, redis_server

PREFIX = "aioqacl"
USER = "aioq-app"

CORE_COMMANDS = (
    # connection and start-up checks (INFO: server version, maxmemory-policy)
    "ping info "
    # every atomic step is a Lua script (the commands it calls are checked too)
    "evalsha script|load "
    "xadd xreadgroup xread xack xdel xclaim xpending xrange xrevrange xlen "
    "xgroup|create xgroup|delconsumer xinfo|groups xinfo|consumers "
    "hset hsetnx hget hmget hgetall hincrby hlen hexists hdel "
    "zadd zrem zrange zrangebyscore zremrangebyscore zscore zcard "
    "get set del exists pexpire persist time sadd srem smembers "
    "subscribe unsubscribe publish"
).split()
"""Every command the worker, the scheduler and the client send on the core path,
directly or from their Lua scripts (from the scripts' ``redis.call`` list and the
transport's own commands)."""

OPERATIONS_COMMANDS = "scan pttl".split()
"""What ``app.status()``, ``workers()``, ``jobs()``, ``purge()`` and dead letters of
every queue (``aioq status``, ``aioq dead list``) add: SCAN finds the queues."""


def acl_rules(prefix: str, password: str, operations: bool = False) -> list[str]:
    """The rules of ``ACL SETUSER <name> <rules…>`` for an aioq app on ``prefix``."""
    extra = OPERATIONS_COMMANDS if operations else []
    return [
        "reset",
        "on",
        f">{password}",
        f"~{prefix}:*",
        f"&{prefix}:*",
        *(f"+{c}" for c in [*CORE_COMMANDS, *extra]),
    ]


@pytest.fixture(params=[False, True], ids=["core", "operations"])
def limited_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, redis.Redis, bool]]:
    """A private redis-server with an ACL user for ``PREFIX``: (its URL, an admin
    client, whether the user may run the operations commands too)."""
    binary = redis_server()
    if binary is None:
        pytest.skip("no redis-server on PATH")
    server = PrivateRedis(binary)
    server.start()
    admin = redis.Redis.from_url(server.url)
    password = secrets.token_hex(16)
    try:
        rules = acl_rules(PREFIX, password, operations=request.param)
        admin.execute_command("ACL", "SETUSER", USER, *rules)
        yield f"redis://{USER}:{password}@127.0.0.1:{server.port}/0", admin, request.param
        assert admin.execute_command("ACL", "DELUSER", USER) == 1
    finally:
        admin.close()
        server.stop()


async def core_path(url: str, operations: bool) -> None:
    """kiq → worker → result, a retry, a delay, progress, an abort, dead letters,
    periodic ticks, schedules steered at run time, lifecycle events, and the
    worker's own loops (heartbeat, recovery, shutdown)."""
    app = aioq.App(url, prefix=PREFIX, visibility_timeout=1.0, events_maxlen=1000)
    ran: list[str] = []

    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="flaky", retries=1, retry_backoff=0.01)
    async def flaky() -> str:
        ran.append("flaky")
        if ran.count("flaky") == 1:
            raise RuntimeError("first attempt fails")
        return "ok"

    @app.task(name="report")
    async def report(ctx: aioq.Context) -> int:
        await ctx.progress(1, 2)
        return 1

    @app.periodic(every=0.3, name="tick")
    async def tick() -> None:
        ran.append("tick")

    worker = aioq.Worker(
        app, scheduler=True, block=0.1, grace=2.0, strict=True, unknown_task_grace=0
    )
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 10)
        assert await (await add.kiq(1, 2)).result(timeout=10) == 3
        assert await (await flaky.kiq()).result(timeout=10) == "ok"
        assert await (await report.kiq()).result(timeout=10) == 1
        assert await (await add.with_options(delay=0.2).kiq(2, 2)).result(timeout=10) == 4
        assert await (await add.kiq_many([(1, 1), (2, 2)]))[1].result(timeout=10) == 4
        bad = await app.send("add", ["a", 1])
        with pytest.raises(aioq.TaskFailed, match="argument 'x'"):
            await bad.result(timeout=10)
        unknown = await app.send("no.such.task")
        with pytest.raises(aioq.TaskFailed, match="unknown task"):
            await unknown.result(timeout=10)
        letters = await app.dead_letters("default")
        assert sorted(d.job_id or "" for d in letters) == sorted([bad.id, unknown.id])
        assert await app.retry_dead("default", [letters[0].id]) == 1
        later = await add.with_options(delay=30).kiq(1, 1)
        assert await later.abort() and await later.state() is aioq.JobState.ABORTED
        assert (await bad.info()).state is aioq.JobState.FAILED
        deadline = asyncio.get_running_loop().time() + 10
        while ran.count("tick") < 2:
            assert asyncio.get_running_loop().time() < deadline, "no periodic tick ran"
            await asyncio.sleep(0.05)
        await app.schedules.add("nightly", "add", cron="0 3 * * *", args=[1, 2])
        assert await app.schedules.pause("nightly") and await app.schedules.pause("tick")
        assert await app.schedules.resume("nightly") and await app.schedules.resume("tick")
        assert [s.name for s in await app.schedules.list()] == ["tick", "nightly"]
        assert await app.schedules.remove("nightly")
        since = timedelta(hours=1)
        kinds = {e.kind async for e in app.events(since, queues=["default"], follow=False)}
        assert kinds == {"started", "progress", "retrying", "succeeded", "dead", "aborted"}
        await asyncio.sleep(1.5)  # heartbeats, lease renewals and recovery passes
        if operations:
            status = await app.status()
            assert [w.id for w in await app.workers()] == [worker.id]
            assert status.queues and await app.jobs("queued", queue="default") == []
            # the re-driven letter failed again: both are dead letters now
            assert [d.queue for d in await app.dead_letters()] == ["default"] * 2
            assert await app.purge("default") == 0
            assert await app.purge_dead() == 2
            assert [e async for e in app.events(since, follow=False)]  # SCANs for queues
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)
        await app.aclose()


async def test_core_path_as_an_acl_user_limited_to_the_prefix(
    limited_url: tuple[str, redis.Redis, bool],
) -> None:
    url, admin, operations = limited_url
    admin.execute_command("ACL", "LOG", "RESET")
    await core_path(url, operations)
    refused = admin.execute_command("ACL", "LOG")
    assert refused == [], f"Redis refused commands of the core path: {refused}"
    # the user really is limited: another prefix, or a command not listed, is refused
    limited = redis.Redis.from_url(url)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            limited.set("other:key", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            limited.config_get("requirepass")
        with pytest.raises(redis.exceptions.NoPermissionError):
            limited.publish("other:channel", b"x")
    finally:
        limited.close()
