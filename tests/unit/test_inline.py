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
        with pytest.raises(aioq.ConfigurationError, match="do not run inline"):
            await aioq.chain(add.s(1, 2), add.s(3)).kiq()
    assert app.broker is before


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
