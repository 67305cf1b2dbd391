"""Workflows: chain, group, chord, nesting, failures, signatures by name."""

from __future__ import annotations

import asyncio

import pytest
import redis

import aioq
from aioq import chain, chord, group
from aioq._core.canvas import Cont, Launch, start
from aioq._core.message import new_message
from tests.conftest import WorkerRunner, on_cluster_too


def tasks(app: aioq.App) -> tuple[aioq.Task[..., int], ...]:
    @app.task(name="add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="mul", queue="math")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="tsum")
    async def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom on {x}")

    return add, mul, tsum, boom


@on_cluster_too
async def test_chain(app: aioq.App, workers: WorkerRunner) -> None:
    add, mul, _, _ = tasks(app)
    await workers.start(app)
    job = await chain(add.s(2, 2), mul.s(10), mul.s(3)).kiq()
    assert await job.result(timeout=10) == 120
    assert await (await (add.s(2, 2) | mul.s(10)).kiq()).result(timeout=10) == 40
    assert await (await add.s(1, 1).kiq()).result(timeout=10) == 2


@on_cluster_too
async def test_group_and_chord(app: aioq.App, workers: WorkerRunner) -> None:
    add, _, tsum, _ = tasks(app)
    await workers.start(app)
    g = await group(add.s(i, i) for i in range(100)).kiq()
    assert isinstance(g, aioq.GroupJob) and len(g.jobs) == 100
    assert await g.result(timeout=10) == [2 * i for i in range(100)]
    assert set(await g.states()) == {aioq.JobState.SUCCEEDED}
    j = await chord((add.s(i, i) for i in range(10)), tsum.s()).kiq()
    assert await j.result(timeout=10) == 90


async def test_nesting(app: aioq.App, workers: WorkerRunner) -> None:
    add, mul, tsum, _ = tasks(app)
    await workers.start(app)
    # a group inside a chain: each member gets the previous result; the next step the list
    job = await chain(add.s(1, 1), group([mul.s(10), mul.s(100)]), tsum.s()).kiq()
    assert await job.result(timeout=10) == 220
    # a chain as a group member
    g = await group([chain(add.s(1, 2), mul.s(3)), add.s(5, 5)]).kiq()
    assert await g.result(timeout=10) == [9, 10]
    # a chord whose header contains chains, used as a chain step
    c = chord([chain(add.s(1, 1), mul.s(2)), chain(add.s(2, 2), mul.s(2))], tsum.s())
    job = await chain(c, mul.s(10)).kiq()
    assert await job.result(timeout=10) == 120


@on_cluster_too
async def test_a_failed_step_stops_the_chain(app: aioq.App, workers: WorkerRunner) -> None:
    add, mul, tsum, boom = tasks(app)
    await workers.start(app)
    job = await chain(add.s(1, 1), boom.s(), mul.s(10)).kiq()
    with pytest.raises(aioq.TaskFailed) as err:
        await job.result(timeout=10)
    assert err.value.type == "ValueError" and "step boom" in err.value.message
    assert "boom on 2" in err.value.message
    # a chord whose member fails does not call the callback
    c = await chord([add.s(1, 1), boom.s(3)], tsum.s()).kiq()
    with pytest.raises(aioq.TaskFailed, match="boom on 3"):
        await c.result(timeout=10)


async def test_signatures_by_name_are_plain_data(
    app: aioq.App, workers: WorkerRunner, redis_url: str, prefix: str
) -> None:
    tasks(app)
    await workers.start(app)
    other = aioq.App(redis_url, prefix=prefix)  # knows no tasks
    try:
        sig = other.signature("add", args=[20, 1])
        encoded = sig.data.__class__.__name__, aioq.Signature(other, sig.data)
        job = await (encoded[1] | other.signature("mul", args=[2], queue="math")).kiq()
        assert await job.result(timeout=10) == 42
    finally:
        await other.aclose()


async def test_followups_are_sent_once_when_a_step_is_redelivered(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    """The same first-step message delivered twice (as after a crash between its
    outcome and its ack): the follow-up is sent, and runs, once."""
    add, _, _, _ = tasks(app)
    runs: dict[str, int] = {}

    @app.task(name="count")
    async def count(ctx: aioq.Context, x: int) -> int:
        runs[ctx.job_id] = runs.get(ctx.job_id, 0) + 1
        return x

    workflow = chain(add.s(1, 1), count.s())
    node, handle = workflow._build()
    [launch] = start(node, [], Cont())
    assert isinstance(launch, Launch)
    _, payload = new_message(
        "add", "default", [1, 1], {}, max_bytes=1 << 20, job_id=launch.job_id, cont=launch.cont
    )
    stream = app.keys.stream("default")
    sync_redis.xadd(stream, {"m": payload})
    await workers.start(app)
    assert await handle.result(timeout=10) == 2
    sync_redis.xadd(stream, {"m": payload})  # the redelivery
    for _ in range(100):
        if sync_redis.xlen(stream) == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert runs == {handle.id: 1}


async def test_a_10000_member_chord(app: aioq.App, workers: WorkerRunner) -> None:
    add, _, tsum, _ = tasks(app)
    calls = 0

    @app.task(name="tsum_counted")
    async def tsum_counted(values: list[int]) -> int:
        nonlocal calls
        calls += 1
        return sum(values)

    await workers.start(app, concurrency=200)
    j = await chord((add.s(i, 0) for i in range(10_000)), tsum_counted.s()).kiq()
    assert await j.result(timeout=120) == sum(range(10_000))
    assert calls == 1
    del tsum


@on_cluster_too
async def test_on_error_callback(app: aioq.App, workers: WorkerRunner) -> None:
    add, mul, _, boom = tasks(app)
    reported: list[tuple[str, dict[str, str]]] = []

    @app.task(name="report")
    async def report(job_id: str, error: dict[str, str]) -> None:
        reported.append((job_id, error))

    await workers.start(app)
    job = await chain(add.s(1, 1), boom.s(), mul.s(2), on_error=report.s()).kiq()
    with pytest.raises(aioq.TaskFailed):
        await job.result(timeout=10)
    for _ in range(100):
        if reported:
            break
        await asyncio.sleep(0.02)
    [(failed_id, error)] = reported
    assert error["type"] == "ValueError" and error["message"] == "boom on 2"
    assert (await app.job(failed_id).info()).task == "boom"


async def test_handles_link_to_earlier_steps(app: aioq.App, workers: WorkerRunner) -> None:
    add, mul, tsum, _ = tasks(app)
    await workers.start(app)
    last = await chain(add.s(1, 1), chord([mul.s(2), mul.s(3)], tsum.s())).kiq()
    assert await last.result(timeout=10) == 10
    members = last.parent
    assert isinstance(members, aioq.GroupJob)
    assert await members.result(timeout=10) == [4, 6]
    assert await members.parent.result(timeout=10) == 2
    assert members.parent.parent is None
