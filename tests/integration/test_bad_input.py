"""Bad input never crashes a worker: it is dead-lettered with the reason, and the
job (where one can be named) fails so its waiter learns why at once."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis

import aioq
from tests.conftest import WorkerRunner


def dead_entries(sync_redis: redis.Redis, app: aioq.App, queue: str = "default") -> list[dict]:
    return [
        {k.decode(): v for k, v in fields.items()}
        for _, fields in sync_redis.xrange(app.keys.dead(queue))
    ]


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_unknown_task_is_dead_lettered_and_fails(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task
    async def ok() -> str:
        return "fine"

    await workers.start(app)
    job = await app.send("no.such.task", args=[1])
    with pytest.raises(aioq.TaskFailed, match="unknown task 'no.such.task'"):
        await job.result(timeout=10)
    dead = dead_entries(sync_redis, app)
    assert len(dead) == 1 and b"unknown task" in dead[0]["reason"]
    assert msgspec.msgpack.decode(dead[0]["m"])[0] == job.id  # the original message is kept
    assert await (await ok.kiq()).result(timeout=10) == "fine"  # still running


async def test_wrong_argument_types_fail_and_dead_letter(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task(name="math.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    await workers.start(app)
    bad = await app.send("math.mul", args=["a", 2])
    with pytest.raises(aioq.TaskFailed) as err:
        await bad.result(timeout=10)
    assert err.value.type == "ArgumentError"
    assert "argument 'x'" in err.value.message and "Expected `int`, got `str`" in err.value.message
    missing = await app.send("math.mul", args=[1])
    with pytest.raises(aioq.TaskFailed, match="missing a required argument: 'y'"):
        await missing.result(timeout=10)
    reasons = [d["reason"] for d in dead_entries(sync_redis, app)]
    assert len(reasons) == 2 and all(r.startswith(b"invalid arguments") for r in reasons)
    assert await (await mul.kiq(2, 5)).result(timeout=10) == 10


async def test_garbage_entries_are_dead_lettered(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task
    async def ok(n: int) -> int:
        return n

    stream = app.keys.stream("default")
    sync_redis.xgroup_create(stream, "workers", id="0", mkstream=True)
    garbage_id = sync_redis.xadd(stream, {"m": b"\xff\x00not msgpack"})
    sync_redis.xadd(stream, {"other": b"no payload field"})
    sync_redis.xadd(stream, {"m": msgspec.msgpack.encode({"a": "map, not an envelope"})})
    good = [await ok.kiq(i) for i in range(5)]
    await workers.start(app)
    assert [await j.result(timeout=10) for j in good] == list(range(5))
    await wait_for(lambda: len(dead_entries(sync_redis, app)) == 3)
    dead = dead_entries(sync_redis, app)
    assert all(d["reason"].startswith(b"undecodable message") for d in dead)
    by_origin = {d["origin"]: d for d in dead}
    assert by_origin[garbage_id]["m"] == b"\xff\x00not msgpack"
    assert sync_redis.xlen(stream) == 0
    assert sync_redis.xpending(stream, "workers")["pending"] == 0


async def test_an_unencodable_result_fails_the_job(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def weird() -> object:
        return object()

    await workers.start(app)
    with pytest.raises(aioq.TaskFailed, match="cannot be encoded"):
        await (await weird.kiq()).result(timeout=10)
