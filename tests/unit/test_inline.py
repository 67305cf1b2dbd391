"""``app.inline()`` / ``aioq.testing.inline``: kiq() runs the task in-process, no Redis
(the app points at a port where nothing listens)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

import aioq
from aioq._core.registry import ArgumentError
from aioq.testing import inline


@dataclasses.dataclass
class Point:
    x: int
    y: int


def make_app() -> aioq.App:
    return aioq.App("redis://127.0.0.1:1/0", prefix="inline-test")


async def test_kiq_runs_the_task_with_converted_arguments_and_encoded_result() -> None:
    app = make_app()

    @app.task
    async def move(p: Point, when: dt.datetime) -> Point:
        assert isinstance(p, Point) and isinstance(when, dt.datetime)
        return Point(p.x + 1, p.y)

    with app.inline():
        job = await move.kiq(Point(1, 2), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        assert await job.result() == Point(2, 2)
        assert await job.state() == aioq.JobState.SUCCEEDED
        assert (await job.info()).attempts == 1


async def test_retries_errors_and_context() -> None:
    app = make_app()
    attempts: list[int] = []

    @app.task(retries=2, retry_backoff=10)
    async def flaky(ctx: aioq.Context) -> str:
        attempts.append(ctx.attempt)
        await ctx.progress(len(attempts), 3)
        if len(attempts) < 3:
            raise ValueError("again")
        return ctx.job_id

    @app.task
    def broken() -> None:
        raise KeyError("nope")

    with inline(app):
        job = await flaky.kiq()
        assert await job.result() == job.id
        assert attempts == [1, 2, 3]  # retried at once, no backoff inline
        info = await job.info()
        assert info.attempts == 3 and info.progress is not None
        failed = await broken.kiq()
        with pytest.raises(aioq.TaskFailed) as caught:
            await failed.result()
        assert caught.value.type == "KeyError"


async def test_bad_arguments_raise_at_kiq_and_the_app_is_restored() -> None:
    app = make_app()

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    before = app.broker
    with app.inline():
        with pytest.raises(ArgumentError):
            await add.kiq("a", 2)  # type: ignore[arg-type]
    assert app.broker is before


async def test_workflows_run_inline() -> None:
    """chain, group and chord run step by step in-process, results carried on as
    a worker carries them; the handle of each awaits the last step / all members."""
    app = make_app()

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def total(values: list[int]) -> int:
        return sum(values)

    with app.inline():
        chained = await aioq.chain(add.s(1, 2), add.s(3), add.s(4)).kiq()
        assert await chained.result() == 10
        grouped = await aioq.group(add.s(i, i) for i in range(4)).kiq()
        assert await grouped.result() == [0, 2, 4, 6]
        chord = await aioq.chord([add.s(1, 1), add.s(2, 2)], total.s()).kiq()
        assert await chord.result() == 6
        nested = await aioq.chain(aioq.group(add.s(1, 1), add.s(2, 2)), total.s(), add.s(10)).kiq()
        assert await nested.result() == 16


async def test_a_failed_step_ends_its_workflow_inline_and_calls_on_error() -> None:
    app = make_app()
    seen: list[tuple[str, str]] = []

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def boom(x: int) -> int:
        raise ValueError(f"no {x}")

    @app.task
    async def report(job_id: str, error: dict[str, Any]) -> None:
        seen.append((job_id, error["type"]))

    with app.inline():
        flow = aioq.chain(add.s(1, 2), boom.s(), add.s(5)).on_error(report.s())
        handle = await flow.kiq()
        with pytest.raises(aioq.TaskFailed) as caught:
            await handle.result()
        assert caught.value.type == "ValueError" and "no 3" in caught.value.message
        assert [t for _, t in seen] == ["ValueError"]
        chord = await aioq.chord([add.s(1, 1), boom.s(2)], add.s(0)).kiq()
        with pytest.raises(aioq.TaskFailed):
            await chord.result()


async def test_inline_runs_the_middleware_and_the_enqueue_hooks() -> None:
    app = aioq.App("redis://127.0.0.1:1/0", prefix="inline-hooks")
    seen: list[str] = []

    @app.before_enqueue
    def tag(call: aioq.Enqueue) -> None:
        call.headers["who"] = "test"

    @app.middleware
    async def around(ctx: aioq.Context, call_next: Any) -> Any:
        seen.append(f"{ctx.task_name}:{ctx.headers['who']}:{ctx.attempt}")
        return [await call_next()]

    @app.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    with app.inline():
        job = await double.kiq(4)
        assert await job.result() == [8]
    assert seen == ["double:test:1"]


def test_sync_callers_run_inline() -> None:
    """delay(), apply_async() and a workflow's delay() from sync code (a Django view
    under test) run inline too, through the process's background loop."""
    app = make_app()

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with app.inline():
        assert add.delay(1, 2).get(timeout=1) == 3
        assert add.apply_async(args=(2, 3)).get(timeout=1) == 5
        assert aioq.chain(add.s(1, 1), add.s(5)).delay().get(timeout=1) == 7
