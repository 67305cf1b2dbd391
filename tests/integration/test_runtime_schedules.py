"""Schedules steered at run time: ``app.schedules.pause/resume`` (of the code's
schedules too), ``add`` / ``remove`` of schedules kept in Redis, followed by two
``aioq scheduler`` processes with each tick sent once, no back-fill after a
resume, and ``aioq schedule list|pause|resume|remove``."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis

import aioq
from aioq._core.message import now_ms
from aioq._transport.keys import Keyspace
from tests import runschedapp
from tests.conftest import run_cli as cli
from tests.integration.test_scheduling import (
    Proc,
    Schedulers,
    assert_consecutive,
    fired,
    spawn,  # noqa: F401  (fixture)
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app(redis_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    runschedapp.app.__init__(redis_url, prefix=prefix)  # type: ignore[misc]
    runschedapp.app.registry.add(runschedapp.echo.definition)
    runschedapp.app.schedule(runschedapp.echo.s("code"), every=0.2, name="in-code")
    yield runschedapp.app
    await runschedapp.app.aclose()


@pytest.fixture
async def schedulers() -> AsyncIterator[Schedulers]:
    runner = Schedulers()
    yield runner
    await runner.stop_all()


async def test_pause_and_resume_a_schedule_of_the_code(
    app: aioq.App, schedulers: Schedulers, sync_redis: redis.Redis
) -> None:
    keys = app.keys
    await schedulers.start(app)
    await wait_for(lambda: len(fired(sync_redis, keys)["in-code"]) >= 2, 5, "two ticks")
    assert await app.schedules.pause("in-code") is True
    paused_at = now_ms()
    assert await app.schedules.pause("in-code") is False  # it already was
    [info] = await app.schedules.list()
    assert (info.name, info.source, info.paused, info.next_run) == ("in-code", "code", True, None)
    before = len(fired(sync_redis, keys)["in-code"])
    await asyncio.sleep(1.0)  # five ticks' worth
    assert len(fired(sync_redis, keys)["in-code"]) == before
    assert await app.schedules.resume("in-code") is True
    resumed_at = now_ms()
    await wait_for(lambda: len(fired(sync_redis, keys)["in-code"]) >= before + 3, 5, "3 more")
    ticks = fired(sync_redis, keys)["in-code"]
    assert len(ticks) == len(set(ticks))
    # nothing in the paused window was sent, before or after the resume (no back-fill)
    assert [t for t in ticks if paused_at + 200 < t <= resumed_at - 200] == []
    assert_consecutive([t for t in ticks if t > resumed_at], 200)
    [info] = await app.schedules.list()
    assert not info.paused and info.next_run is not None and info.last_job is not None


async def test_resume_with_catch_up_does_not_back_fill(
    redis_url: str, prefix: str, schedulers: Schedulers, sync_redis: redis.Redis
) -> None:
    """A schedule with ``catch_up=True`` paused while no scheduler runs: the
    scheduler started after the resume does not send one job for the window."""
    app = aioq.App(redis_url, prefix=prefix)
    try:
        app.schedule(runschedapp.echo.s("x"), every=0.2, name="catchy", catch_up=True)
        first = await schedulers.start(app)
        await wait_for(lambda: len(fired(sync_redis, app.keys)["catchy"]) >= 1, 5, "a tick")
        await schedulers.stop(first)
        await app.schedules.pause("catchy")
        await asyncio.sleep(1.0)
        await app.schedules.resume("catchy")
        resumed_at = now_ms()
        count = len(fired(sync_redis, app.keys)["catchy"])
        await schedulers.start(app)
        await wait_for(lambda: len(fired(sync_redis, app.keys)["catchy"]) > count, 5, "a tick")
        await asyncio.sleep(0.5)
        new = sorted(fired(sync_redis, app.keys)["catchy"])[count:]
        assert min(new) > resumed_at  # no job for a tick of the paused window
    finally:
        await app.aclose()


async def test_bad_calls_are_refused(app: aioq.App) -> None:
    with pytest.raises(KeyError, match="no schedule named 'nope'"):
        await app.schedules.pause("nope")
    with pytest.raises(aioq.ConfigurationError, match="defined in the code"):
        await app.schedules.remove("in-code")
    with pytest.raises(aioq.ConfigurationError, match="defined in the code"):
        await app.schedules.add("in-code", "echo", every=1)
    with pytest.raises(aioq.ConfigurationError, match="bad cron"):
        await app.schedules.add("x", "echo", cron="every day")
    with pytest.raises(aioq.ConfigurationError, match="either cron= or every="):
        await app.schedules.add("x", "echo")
    with pytest.raises(TypeError):
        await app.schedules.add("x", "echo", every=1, args=[object()])
    assert await app.schedules.remove("never-added") is False
    assert [s.name for s in await app.schedules.list()] == ["in-code"]


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_two_scheduler_processes_follow_schedules_added_at_run_time(
    app: aioq.App,
    spawn: Callable[..., Proc],  # noqa: F811
    redis_url: str,
    prefix: str,
    sync_redis: redis.Redis,
) -> None:
    procs = [spawn("scheduler", "tests.runschedapp:app") for _ in range(2)]
    for proc in procs:
        await asyncio.to_thread(proc.wait_for_output, "scheduler started")
    keys = Keyspace(prefix)
    await app.schedules.add("greet", runschedapp.echo, every=0.25, args=["hi"], queue="sched")

    def greets() -> list[int]:
        return fired(sync_redis, keys, "sched")["greet"]

    await wait_for(lambda: len(greets()) >= 8, 10, "8 ticks of the added schedule")
    for proc in procs:  # both took it on
        assert "schedule 'greet' added at run time: every 0.25s" in proc.output()
    listed = await asyncio.to_thread(cli, redis_url, prefix, "schedule", "list", APP)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:6] == ["NAME", "TASK", "SPEC", "QUEUE", "SOURCE", "STATE"]
    assert rows[1].split()[:7] == ["in-code", "echo", "every", "0.2s", "default", "code", "active"]
    assert rows[2].split()[:7] == ["greet", "echo", "every", "0.25s", "sched", "runtime", "active"]

    paused = await asyncio.to_thread(cli, redis_url, prefix, "schedule", "pause", APP, "greet")
    paused_at = now_ms()
    assert (paused.returncode, paused.stdout) == (0, "paused schedule 'greet'\n")
    count = len(greets())
    await asyncio.sleep(1.0)
    assert len(greets()) <= count + 1  # one tick may have been in flight
    as_json = await asyncio.to_thread(cli, redis_url, prefix, "schedule", "list", APP, "--json")
    greet = next(s for s in json.loads(as_json.stdout) if s["name"] == "greet")
    assert (greet["paused"], greet["next_run"], greet["args"]) == (True, None, ["hi"])

    resuming_at = now_ms()
    resumed = await asyncio.to_thread(cli, redis_url, prefix, "schedule", "resume", APP, "greet")
    assert resumed.returncode == 0, resumed.stderr
    await wait_for(lambda: len(greets()) >= count + 5, 10, "ticks after the resume")
    removed = await asyncio.to_thread(cli, redis_url, prefix, "schedule", "remove", APP, "greet")
    assert (removed.returncode, removed.stdout) == (0, "removed schedule 'greet'\n")
    count = len(greets())
    await asyncio.sleep(1.0)
    assert len(greets()) <= count + 1
    for proc in procs:
        await asyncio.to_thread(proc.wait_for_output, "schedule 'greet' was removed", 5)
    ticks = sorted(greets())
    assert len(ticks) == len(set(ticks)), "a tick was sent twice"
    # every tick once, but for one gap: the paused window, not back-filled
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != 250]
    assert len(gaps) == 1, gaps
    assert gaps[0][0] <= paused_at and gaps[0][1] >= resuming_at
    # the code's schedule ran all along, once per tick
    assert_consecutive(fired(sync_redis, keys)["in-code"], 200)
    gone = await asyncio.to_thread(cli, redis_url, prefix, "schedule", "pause", APP, "greet")
    assert gone.returncode == 1 and "no schedule named 'greet'" in gone.stderr
    for proc in procs:
        assert proc.terminate() == 0, proc.output()


APP = "tests.runschedapp:app"
