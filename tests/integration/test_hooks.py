"""Worker lifespan hooks, execution middleware and enqueue hooks, on a real worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
import redis

import aioq
from tests.conftest import WorkerRunner


async def test_start_hooks_give_tasks_their_state_and_stop_hooks_close_it(
    app: aioq.App, workers: WorkerRunner
) -> None:
    events: list[str] = []

    class Pool:
        closed = False

    @app.on_worker_start
    async def open_pool() -> dict[str, Any]:
        events.append("start pool")
        return {"pool": Pool()}

    @app.on_worker_start
    def settings() -> Mapping[str, Any]:
        events.append("start settings")
        return {"factor": 10}

    @app.on_worker_start
    def nothing() -> None:
        events.append("start nothing")

    @app.on_worker_stop
    async def close_pool(state: Mapping[str, Any]) -> None:
        state["pool"].closed = True
        events.append("stop pool")

    @app.on_worker_stop
    def goodbye() -> None:
        events.append("stop goodbye")

    @app.task
    async def scaled(ctx: aioq.Context, x: int) -> int:
        assert not ctx.state["pool"].closed
        return int(x * ctx.state["factor"])

    @app.task
    def scaled_sync(ctx: aioq.Context, x: int) -> int:
        return int(x * ctx.state["factor"])

    worker = await workers.start(app)
    assert events == ["start pool", "start settings", "start nothing"]
    jobs = [await scaled.kiq(i) for i in range(5)] + [await scaled_sync.kiq(7)]
    assert await aioq.gather(*jobs, timeout=10) == [0, 10, 20, 30, 40, 70]
    pool = worker.state["pool"]
    with pytest.raises(TypeError):
        worker.state["other"] = 1  # type: ignore[index]  # read-only
    await workers.stop(worker)
    assert events[3:] == ["stop pool", "stop goodbye"]
    assert pool.closed


async def test_a_failing_start_hook_stops_the_worker_before_it_reads(
    app: aioq.App, sync_redis: redis.Redis, prefix: str
) -> None:
    stopped: list[Mapping[str, Any]] = []

    @app.on_worker_start
    def first() -> dict[str, int]:
        return {"a": 1}

    @app.on_worker_start
    async def broken() -> None:
        raise RuntimeError("no database")

    @app.on_worker_stop
    def stop(state: Mapping[str, Any]) -> None:
        stopped.append(dict(state))

    @app.task
    async def noop() -> None:
        return None

    job = await noop.kiq()
    worker = aioq.Worker(app, block=0.1)
    with pytest.raises(RuntimeError, match="no database"):
        await asyncio.wait_for(worker.run(), 10)
    assert stopped == [{"a": 1}]  # what did start is closed
    assert await job.state() is aioq.JobState.QUEUED
    assert sync_redis.xlen(f"{prefix}:{{default}}:stream") == 1


async def test_middleware_wraps_every_execution_in_registration_order(
    app: aioq.App, workers: WorkerRunner
) -> None:
    seen: list[str] = []

    @app.middleware
    async def outer(ctx: aioq.Context, call_next: Callable[[], Awaitable[Any]]) -> Any:
        seen.append(f"outer>{ctx.task_name.rsplit('.', 1)[-1]}:{ctx.attempt}")
        result = await call_next()
        seen.append("outer<")
        return result

    @app.middleware
    async def inner(ctx: aioq.Context, call_next: Callable[[], Awaitable[Any]]) -> Any:
        seen.append("inner>")
        result = await call_next()
        seen.append("inner<")
        return [result, "wrapped"]

    @app.task
    async def plain(x: int) -> int:  # no ctx parameter: the middleware still gets one
        seen.append("body")
        return x + 1

    @app.task
    def blocking(x: int) -> int:
        seen.append("sync body")
        return x * 2

    await workers.start(app)
    assert await (await plain.kiq(1)).result(timeout=10) == [2, "wrapped"]
    assert seen == ["outer>plain:1", "inner>", "body", "inner<", "outer<"]
    seen.clear()
    assert await (await blocking.kiq(4)).result(timeout=10) == [8, "wrapped"]
    assert seen == ["outer>blocking:1", "inner>", "sync body", "inner<", "outer<"]


async def test_middleware_errors_take_the_normal_retry_and_fail_path(
    app: aioq.App, workers: WorkerRunner
) -> None:
    raised: list[str] = []

    @app.middleware
    async def guard(ctx: aioq.Context, call_next: Callable[[], Awaitable[Any]]) -> Any:
        if ctx.task_name.endswith("flaky") and ctx.attempt == 1:
            raise ConnectionError("middleware refused attempt 1")
        try:
            return await call_next()
        except ValueError as exc:
            raised.append(str(exc))
            raise

    @app.task(retries=2, retry_backoff=0.01)
    async def flaky() -> str:
        return "ok"

    @app.task(retries=0)
    def broken() -> None:
        raise ValueError("bad input")

    await workers.start(app)
    job = await flaky.kiq()
    assert await job.result(timeout=10) == "ok"
    assert (await job.info()).attempts == 2
    failing = await broken.kiq()
    with pytest.raises(aioq.TaskFailed) as caught:
        await failing.result(timeout=10)
    assert caught.value.type == "ValueError" and raised == ["bad input"]


async def test_before_enqueue_changes_headers_and_placement_and_can_refuse(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis, prefix: str
) -> None:
    seen: list[aioq.Enqueue] = []

    @app.before_enqueue
    def tag(call: aioq.Enqueue) -> None:
        seen.append(call)
        if call.kwargs.get("secret"):
            raise PermissionError("no secrets on the queue")
        call.headers["tenant"] = "acme"
        if call.task.endswith("urgent"):
            call.queue, call.priority = "fast", 7

    @app.before_enqueue
    async def second(call: aioq.Enqueue) -> None:
        call.headers["order"] = call.headers.get("tenant", "-") + "+second"

    @app.task
    async def show(ctx: aioq.Context, secret: bool = False) -> dict[str, str]:
        return dict(ctx.headers)

    @app.task
    async def urgent(ctx: aioq.Context) -> list[Any]:
        return [ctx.queue, dict(ctx.headers)]

    await workers.start(app, queues=["default", "fast"])
    job = await show.kiq()
    assert seen[0].job_id == job.id
    expected = {"tenant": "acme", "order": "acme+second"}
    assert await job.result(timeout=10) == expected
    assert await (await urgent.kiq()).result(timeout=10) == ["fast", expected]
    assert await (await app.send(show.name)).result(timeout=10) == expected
    many = await show.kiq_many([(), ()])
    assert await aioq.gather(*many, timeout=10) == [expected, expected]

    with pytest.raises(PermissionError, match="no secrets"):
        await show.kiq(secret=True)
    assert sync_redis.xlen(f"{prefix}:{{default}}:stream") == 0  # nothing was written
    assert not sync_redis.exists(f"{prefix}:job:{seen[-1].job_id}")


async def test_enqueue_middleware_wraps_the_send(app: aioq.App, workers: WorkerRunner) -> None:
    log: list[tuple[str, str]] = []

    @app.enqueue_middleware
    async def around(call: aioq.Enqueue, call_next: Callable[[], Awaitable[str]]) -> str:
        log.append(("before", call.job_id))
        job_id = await call_next()
        log.append(("after", job_id))
        return job_id

    @app.task
    async def noop() -> None:
        return None

    job = await noop.kiq()
    assert log == [("before", job.id), ("after", job.id)]
    await workers.start(app)
    await job.result(timeout=10)


async def test_headers_follow_a_workflow_and_a_refusal_refuses_all_of_it(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis, prefix: str
) -> None:
    @app.before_enqueue
    def tag(call: aioq.Enqueue) -> None:
        if call.args == ["refuse"]:
            raise PermissionError("refused")
        call.headers["trail"] = "sent"

    @app.task
    async def step(ctx: aioq.Context, x: str) -> str:
        trail = ctx.headers["trail"]
        ctx.headers["trail"] = f"{trail}>{x}"
        return trail

    @app.task
    async def collect(ctx: aioq.Context, results: list[str]) -> list[Any]:
        return [results, ctx.headers["trail"]]

    await workers.start(app)
    job = await aioq.chain(step.s("a"), step.s(), step.s()).kiq()
    # each step sees the headers its predecessor left (the first: what the hook set)
    assert await job.result(timeout=10) == "sent>a>sent"
    chord = await aioq.chord([step.s("b"), step.s("c")], collect.s()).kiq()
    results, last = await chord.result(timeout=10)
    assert results == ["sent", "sent"] and last in ("sent>b", "sent>c")

    keys_before = set(sync_redis.scan_iter(match=f"{prefix}:job:*"))
    with pytest.raises(PermissionError, match="refused"):
        await aioq.group([step.s("d"), step.s("refuse"), step.s("e")]).kiq()
    assert set(sync_redis.scan_iter(match=f"{prefix}:job:*")) == keys_before
    assert sync_redis.xlen(f"{prefix}:{{default}}:stream") == 0


async def test_hooks_must_be_functions_of_the_right_kind(app: aioq.App) -> None:
    def sync_mw(ctx: aioq.Context, call_next: Any) -> Any:
        return call_next()

    with pytest.raises(aioq.ConfigurationError, match="async function"):
        app.middleware(sync_mw)
    with pytest.raises(aioq.ConfigurationError, match="no arguments"):
        app.on_worker_start(lambda x: None)
    with pytest.raises(aioq.ConfigurationError, match="a function"):
        app.before_enqueue(42)  # type: ignore[type-var]

    @app.before_enqueue
    def bad_headers(call: aioq.Enqueue) -> None:
        call.headers["n"] = 1  # type: ignore[assignment]

    @app.task
    async def noop() -> None:
        return None

    with pytest.raises(aioq.ConfigurationError, match="headers must be a dict of str to str"):
        await noop.kiq()
