"""Rolling deploys: an old worker hands back messages of tasks only newer code knows."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

import aioq
from aioq._core.message import decode_message
from tests.conftest import WorkerRunner


def _apps(redis_url: str, prefix: str) -> tuple[aioq.App, aioq.App]:
    """The same app before and after a deploy that adds ``report.v2``."""
    old = aioq.App(redis_url, prefix=prefix, visibility_timeout=2.0)
    new = aioq.App(redis_url, prefix=prefix, visibility_timeout=2.0)

    async def v1(n: int) -> str:
        return f"v1:{n}"

    old.task(name="report.v1")(v1)
    new.task(name="report.v1")(v1)

    @new.task(name="report.v2")
    async def v2(n: int, detail: bool = False) -> str:
        return f"v2:{n}:{detail}"

    return old, new


async def test_an_old_worker_hands_new_tasks_back_until_a_new_worker_runs_them(
    redis_url: str,
    prefix: str,
    workers: WorkerRunner,
    sync_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = _apps(redis_url, prefix)
    try:
        await workers.start(old, unknown_task_grace=30)
        job = await new.send("report.v2", args=[7])
        before = await new.send("report.v1", args=[1])
        assert await before.result(timeout=10) == "v1:1"  # the old worker runs what it knows
        delayed = f"{prefix}:{{default}}:delayed"
        deadline = time.monotonic() + 10
        while not sync_redis.zcard(delayed):  # handed back at least once
            assert time.monotonic() < deadline, "the old worker never handed the job back"
            await asyncio.sleep(0.02)
        (payload,) = sync_redis.zrange(delayed, 0, -1)
        assert decode_message(payload).unknown_since_ms > 0
        assert await job.state() is aioq.JobState.QUEUED
        assert any("'report.v2' is not registered" in r.message for r in caplog.records)

        await workers.start(new)  # the deploy reaches the second worker
        assert await job.result(timeout=10) == "v2:7:False"
        assert sync_redis.xlen(f"{prefix}:{{default}}:dead") == 0
        # both run side by side: v1 jobs go to either, v2 jobs only to the new one
        jobs = [await new.send("report.v2", args=[i]) for i in range(5)]
        jobs += [await new.send("report.v1", args=[i]) for i in range(5)]
        assert await aioq.gather(*jobs, timeout=15) == [f"v2:{i}:False" for i in range(5)] + [
            f"v1:{i}" for i in range(5)
        ]
        assert sync_redis.xlen(f"{prefix}:{{default}}:dead") == 0
    finally:
        await old.aclose()
        await new.aclose()


async def test_past_the_window_the_message_is_dead_lettered_with_the_reason(
    redis_url: str, prefix: str, workers: WorkerRunner, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = _apps(redis_url, prefix)
    caplog.set_level(logging.WARNING, "aioq.worker")
    try:
        await workers.start(old, unknown_task_grace=1.5)
        began = time.monotonic()
        job = await new.send("report.v2", args=[1])
        with pytest.raises(aioq.TaskFailed) as failed:
            await job.result(timeout=15)
        waited = time.monotonic() - began
        assert failed.value.type == "UnknownTask"
        assert "within unknown_task_grace=1.5s" in failed.value.message
        assert 1.4 < waited < 6, waited
        (letter,) = await old.dead_letters("default")
        assert letter.job_id == job.id and "no worker that knows it took it" in letter.reason
        warnings = [r for r in caplog.records if "is not registered" in r.message]
        assert len(warnings) == 1  # once per task name, not per hand-back
    finally:
        await old.aclose()
        await new.aclose()


async def test_a_grace_of_zero_dead_letters_at_once(app: aioq.App, workers: WorkerRunner) -> None:
    await workers.start(app, unknown_task_grace=0)
    job = await app.send("no.such.task")
    with pytest.raises(aioq.TaskFailed, match="no task of that name is registered$"):
        await job.result(timeout=5)
    with pytest.raises(aioq.ConfigurationError, match="unknown_task_grace"):
        aioq.Worker(app, unknown_task_grace=-1)
