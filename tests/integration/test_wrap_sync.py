"""``app.wrap_sync_tasks``: code run around every sync task, in the task's thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

import aioq
from aioq.errors import ConfigurationError
from tests.conftest import WorkerRunner


async def test_wrappers_run_around_each_sync_attempt_in_its_thread(
    app: aioq.App, workers: WorkerRunner
) -> None:
    events: list[tuple[str, int]] = []

    @app.wrap_sync_tasks
    def outer(call: Callable[[], Any]) -> Any:
        events.append(("outer-in", threading.get_ident()))
        try:
            return call()
        finally:
            events.append(("outer-out", threading.get_ident()))

    @app.wrap_sync_tasks
    def inner(call: Callable[[], Any]) -> Any:
        events.append(("inner-in", threading.get_ident()))
        return call() * 10

    @app.task(retries=1, retry_backoff=0.01)
    def flaky(ctx: aioq.Context, x: int) -> int:
        events.append(("task", threading.get_ident()))
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return x

    @app.task
    async def native() -> str:
        events.append(("async", threading.get_ident()))
        return "not wrapped"

    await workers.start(app)
    assert await (await flaky.kiq(4)).result(timeout=10) == 40
    names = [name for name, _ in events]
    # two attempts, each wrapped once, the failing one's clean-up included
    assert names == ["outer-in", "inner-in", "task", "outer-out"] * 2
    # every step of one attempt ran in that attempt's thread, not the event loop's
    first = {ident for _, ident in events[:4]}
    assert len(first) == 1 and threading.get_ident() not in first

    events.clear()
    assert await (await native.kiq()).result(timeout=10) == "not wrapped"
    assert [name for name, _ in events] == ["async"]


async def test_a_wrapper_error_fails_the_job_and_inline_mode_wraps_too(app: aioq.App) -> None:
    @app.wrap_sync_tasks
    def refuse(call: Callable[[], Any]) -> Any:
        raise RuntimeError("the database is down")

    ran: list[int] = []

    @app.task
    def work() -> None:
        ran.append(1)

    with app.inline():
        job = await work.kiq()
        with pytest.raises(aioq.TaskFailed, match="the database is down"):
            await job.result()
    assert ran == []


def test_a_wrapper_must_be_callable() -> None:
    app = aioq.App("redis://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match="needs a callable"):
        app.wrap_sync_tasks(42)  # type: ignore[arg-type]
    assert app.sync_task_wrapper is None
