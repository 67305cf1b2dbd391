"""Lifecycle events against real workers: every transition writes its event with
the script that makes it, ``App.events()`` merges the queues' streams in Redis'
order, follows new ones, stops when told; events off writes nothing; the per-job
(Cluster) path writes the same events; ``aioq events`` prints them."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

import aioq
from aioq._core.event import Note
from aioq._transport.connection import connect
from aioq._transport.streams import Streams
from aioq._transport.types import Completion, Entry, Finish, Start
from tests import eventsapp
from tests.conftest import WorkerRunner, on_cluster_too
from tests.conftest import run_cli as cli

ROOT = Path(__file__).resolve().parents[2]
TASKS = (
    eventsapp.add,
    eventsapp.elsewhere,
    eventsapp.boom,
    eventsapp.flaky,
    eventsapp.steps,
    eventsapp.nap,
    eventsapp.chain_step,
)


def reinit(redis_url: str, prefix: str, **options: object) -> aioq.App:
    options.setdefault("events_maxlen", 10_000)
    eventsapp.app.__init__(redis_url, prefix=prefix, visibility_timeout=2.0, **options)  # type: ignore[misc]
    for task in TASKS:
        eventsapp.app.registry.add(task.definition)
    return eventsapp.app


@pytest.fixture
async def app(broker_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    yield reinit(broker_url, prefix)
    await eventsapp.app.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def all_events(app: aioq.App, since: datetime) -> list[aioq.Event]:
    return [ev async for ev in app.events(since, follow=False)]


def of(events: list[aioq.Event], job_id: str) -> list[tuple[str, int, str]]:
    return [(e.kind, e.attempt, e.detail) for e in events if e.job_id == job_id]


@on_cluster_too
async def test_every_transition_writes_its_event(
    app: aioq.App, workers: WorkerRunner, prefix: str
) -> None:
    begin = datetime.now(UTC) - timedelta(seconds=1)
    worker = await workers.start(app, queues=["default", "other"])
    ok = await eventsapp.add.kiq(1, 2)
    other = await eventsapp.elsewhere.kiq(7)
    bad = await eventsapp.boom.kiq("disk full")
    flaky = await eventsapp.flaky.kiq("again")
    stepped = await eventsapp.steps.kiq(3)
    long = await eventsapp.nap.kiq(30)
    unknown = await app.send("no.such.task", [1])
    assert await ok.result(timeout=10) == 3
    assert await other.result(timeout=10) == 7
    assert await stepped.result(timeout=10) == 3
    for job in (bad, flaky):
        with pytest.raises(aioq.TaskFailed):
            await job.result(timeout=10)

    async def running() -> bool:
        return await long.state() is aioq.JobState.RUNNING

    await eventually(running)
    assert await long.abort()
    with pytest.raises(aioq.JobAborted):
        await long.result(timeout=10)

    async def dead() -> bool:
        return any(e.kind == "dead" for e in await all_events(app, begin))

    await eventually(dead)
    events = await all_events(app, begin)
    w = worker.id
    assert of(events, ok.id) == [("started", 1, ""), ("succeeded", 1, "")]
    assert of(events, other.id) == [("started", 1, ""), ("succeeded", 1, "")]
    assert of(events, bad.id) == [("started", 1, ""), ("failed", 1, "ValueError: disk full")]
    flaky_events = of(events, flaky.id)
    assert flaky_events[0] == ("started", 1, "")
    assert flaky_events[1][:2] == ("retrying", 1)
    assert re.fullmatch(r"retry 1 of 1 in 0\.\ds: RuntimeError: again", flaky_events[1][2])
    assert flaky_events[2:] == [("started", 2, ""), ("failed", 2, "RuntimeError: again")]
    assert of(events, stepped.id) == [
        ("started", 1, ""),
        ("progress", 1, "1/3"),
        ("progress", 1, "2/3"),
        ("progress", 1, "3/3"),
        ("succeeded", 1, ""),
    ]
    assert of(events, long.id) == [("started", 1, ""), ("aborted", 1, "")]
    [dead_event] = [e for e in events if e.kind == "dead"]
    assert (dead_event.job_id, dead_event.task, dead_event.attempt) == (
        unknown.id,
        "no.such.task",
        0,
    )
    assert "unknown task 'no.such.task'" in dead_event.detail
    # who, where and when: the worker that made the transition, the queue, Redis time
    assert {e.worker for e in events} == {w}
    assert {e.queue for e in events if e.job_id == other.id} == {"other"}
    assert {e.task for e in events if e.job_id == ok.id} == {eventsapp.add.name}
    assert all(begin <= e.at <= datetime.now(UTC) for e in events)
    # one order across both queues: Redis' (entry ids), oldest first
    order = [tuple(map(int, e.id.split("-"))) for e in events]
    assert order == sorted(order)
    assert len(events) == 18


async def test_workflow_steps_write_their_events(app: aioq.App, workers: WorkerRunner) -> None:
    begin = datetime.now(UTC) - timedelta(seconds=1)
    await workers.start(app)
    flow = await aioq.chain(eventsapp.chain_step.s(1), eventsapp.chain_step.s()).kiq()
    assert await flow.result(timeout=10) == 3
    events = await all_events(app, begin)
    kinds = [(e.kind, e.task) for e in events]
    step = eventsapp.chain_step.name
    assert kinds == [("started", step), ("succeeded", step)] * 2


@on_cluster_too
async def test_events_follow_new_ones_and_resume_after_an_id(
    app: aioq.App, workers: WorkerRunner
) -> None:
    await workers.start(app)
    seen: list[aioq.Event] = []

    async def tail() -> None:
        async for ev in app.events(block=0.1):
            seen.append(ev)  # noqa: PERF401  (as they come, not at the end)

    tailing = asyncio.create_task(tail())
    await asyncio.sleep(0.3)  # the tail has read Redis' "now"
    job = await eventsapp.add.kiq(2, 2)
    assert await job.result(timeout=10) == 4

    async def both() -> bool:
        return len(seen) >= 2

    await eventually(both)
    tailing.cancel()
    assert [(e.kind, e.job_id) for e in seen] == [("started", job.id), ("succeeded", job.id)]
    # since=<an event's id>: what came after it
    after = [ev async for ev in app.events(seen[0].id, follow=False)]
    assert [(e.kind, e.job_id) for e in after] == [("succeeded", job.id)]


async def test_merged_pages_keep_redis_order(app: aioq.App, sync_redis: redis.Redis) -> None:
    """More events than one read's page on one queue, a few on another written
    in between: handed out in Redis time order all the same (within one
    millisecond, two queues' events have no order: each stream counts its own)."""
    keys = app.keys
    written: dict[str, list[str]] = {"default": [], "other": []}
    for i in range(1200):
        queue = "other" if i % 400 == 7 else "default"
        if queue == "other":
            time.sleep(0.002)  # a millisecond of its own, after what came before
        sync_redis.xadd(keys.events(queue), {"k": "started", "j": str(i)})
        written[queue].append(str(i))
        if queue == "other":
            time.sleep(0.002)
    events = [ev async for ev in app.events(datetime.fromtimestamp(0, UTC), follow=False)]
    assert sorted(int(e.job_id) for e in events) == list(range(1200))
    for queue, ids in written.items():
        assert [e.job_id for e in events if e.queue == queue] == ids
    millis = [int(e.id.split("-")[0]) for e in events]
    assert millis == sorted(millis)
    # each "other" event comes after every event written before it
    for i in (7, 407, 807):
        at = [e.job_id for e in events].index(str(i))
        assert {int(e.job_id) for e in events[:at]} >= set(range(i)) - {7, 407, 807}


async def test_events_are_off_by_default(redis_url: str, prefix: str) -> None:
    assert aioq.App(redis_url, prefix=prefix).events_maxlen == 0


async def test_events_off_writes_none(
    redis_url: str, prefix: str, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app = reinit(redis_url, prefix, events_maxlen=0)
    try:
        await workers.start(app)
        ok = await eventsapp.add.kiq(1, 1)
        bad = await eventsapp.boom.kiq("x")
        assert await ok.result(timeout=10) == 2
        with pytest.raises(aioq.TaskFailed):
            await bad.result(timeout=10)
        assert list(sync_redis.scan_iter(match=f"{prefix}:*:events")) == []
    finally:
        await app.aclose()


async def test_the_stream_is_capped(
    redis_url: str, prefix: str, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app = reinit(redis_url, prefix, events_maxlen=10)
    try:
        await workers.start(app)
        jobs = await eventsapp.add.kiq_many([(i, i) for i in range(300)])
        await aioq.gather(*jobs, timeout=30)
        # MAXLEN ~ trims whole nodes (100 entries each): far below 600 events
        assert 10 <= sync_redis.xlen(app.keys.events("default")) <= 200
    finally:
        await app.aclose()


async def test_the_per_job_path_writes_the_same_events(app: aioq.App, prefix: str) -> None:
    """``batch_records=False`` (the Redis Cluster path): start.lua and finish.lua
    write records in the jobs' slots, the events follow in the queue's."""
    redis_client = connect(app.url)
    try:
        streams = Streams(redis_client, app.keys, batch_records=False, events_maxlen=100)
        await streams.ensure_group("default")
        stream = app.keys.stream("default")
        await redis_client.xadd(stream, {"m": b"x"})
        await redis_client.xadd(stream, {"m": b"y"})
        reply = await redis_client.xreadgroup("workers", "w1", {stream: ">"}, count=2)
        (e1, _), (e2, _) = reply[0][1]
        entries = [Entry(stream, "default", 0, e, b"", 1) for e in (e1, e2)]
        starts = [Start(j, "t", "default", 1) for j in ("j1", "j2")]
        assert await streams.start("w1", 1, starts) == [1, 1]
        done = await streams.complete(
            "w1",
            [
                Completion(
                    entries[0],
                    Finish("j1", 1, "failed", b"o", 2, 1000),
                    Note("failed", "j1", "t", 1, "ValueError: x"),
                ),
                # fenced: another attempt holds j2, so no outcome and no event
                Completion(
                    entries[1],
                    Finish("j2", 7, "succeeded", b"o", 2, 1000),
                    Note("succeeded", "j2", "t", 7),
                ),
            ],
        )
        assert [d.wrote for d in done if not isinstance(d, Exception)] == [1, 3]
        events = [ev async for ev in app.events(datetime.fromtimestamp(0, UTC), follow=False)]
        assert [(e.kind, e.job_id, e.attempt, e.worker, e.detail) for e in events] == [
            ("started", "j1", 1, "w1", ""),
            ("started", "j2", 1, "w1", ""),
            ("failed", "j1", 1, "w1", "ValueError: x"),
        ]
    finally:
        await redis_client.aclose()


async def test_bad_since_is_refused(app: aioq.App) -> None:
    with pytest.raises(ValueError, match="Event.id"):
        [ev async for ev in app.events("yesterday")]
    with pytest.raises(ValueError, match="aware"):
        [ev async for ev in app.events(datetime(2026, 1, 1))]
    with pytest.raises(aioq.ConfigurationError, match="events_maxlen"):
        aioq.App(events_maxlen=-1)


async def test_aioq_events_prints_them(
    app: aioq.App, workers: WorkerRunner, redis_url: str, prefix: str
) -> None:
    worker = await workers.start(app)
    ok = await eventsapp.add.kiq(1, 2)
    assert await ok.result(timeout=10) == 3
    bad = await eventsapp.boom.kiq("disk full")  # after: the lines' order is known
    with pytest.raises(aioq.TaskFailed):
        await bad.result(timeout=10)
    text = await asyncio.to_thread(
        cli, redis_url, prefix, "events", "tests.eventsapp:app", "--since", "1h", "--no-follow"
    )
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 4
    assert "succeeded" in lines[1] and f"{eventsapp.add.name}[{ok.id}]" in lines[1]
    assert lines[3].endswith(f"attempt=1  worker={worker.id}  ValueError: disk full")
    as_json = await asyncio.to_thread(
        cli,
        redis_url,
        prefix,
        "events",
        "tests.eventsapp:app",
        "--since",
        "all",
        "--no-follow",
        "--json",
        "--kind",
        "failed",
    )
    assert as_json.returncode == 0, as_json.stderr
    [line] = as_json.stdout.splitlines()
    ev = json.loads(line)
    assert (ev["kind"], ev["job_id"], ev["detail"]) == ("failed", bad.id, "ValueError: disk full")
    wrong = await asyncio.to_thread(
        cli, redis_url, prefix, "events", "tests.eventsapp:app", "--since", "soon"
    )
    assert wrong.returncode == 1 and "--since 'soon'" in wrong.stderr
