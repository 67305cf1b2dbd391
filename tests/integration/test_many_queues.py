"""A worker on many queues (more than ``reader.SMALL``) reads only the level streams
that can have work: hot ones by fetch, cold ones watched from their marks, missing
ones watched or discovered (``aioq/_worker/reader.py``)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

import aioq
from aioq._transport.connection import connect
from aioq._transport.streams import Streams
from aioq._worker import pump, reader
from tests.conftest import WorkerRunner, on_cluster_too

QUEUES = [f"q{i}" for i in range(reader.SMALL + 24)]


def _echo(app: aioq.App) -> aioq.Task[[int], int]:
    @app.task(name="echo")
    async def echo(x: int) -> int:
        return x

    return echo


async def _send(task: aioq.Task[[int], int], queue: str, x: int, priority: int = 0) -> int:
    job = await task.with_options(queue=queue, priority=priority).kiq(x)
    return await job.result(timeout=10)


@on_cluster_too
async def test_every_queue_and_level_is_served(app: aioq.App, workers: WorkerRunner) -> None:
    echo = _echo(app)
    # Sent before the worker starts: every stream that exists is hot at first (one
    # of them a priority level above 0), the others missing.
    early = [await echo.with_options(queue=q).kiq(i) for i, q in enumerate(QUEUES)]
    urgent = await echo.with_options(queue=QUEUES[5], priority=4).kiq(-1)
    await workers.start(app, queues=QUEUES)
    assert [await j.result(timeout=10) for j in early] == list(range(len(QUEUES)))
    assert await urgent.result(timeout=10) == -1
    await asyncio.sleep(0.3)  # idle now: every stream cold or missing, watched
    # A queue's level stream that never existed (priority 7), and plain ones, one by one.
    assert await _send(echo, QUEUES[-1], 1, priority=7) == 1
    for i, q in enumerate(QUEUES[::7]):
        assert await _send(echo, q, i) == i
    # Many at once, over every queue and two levels.
    jobs = [
        await echo.with_options(queue=q, priority=(i % 2) * 5).kiq(i) for i, q in enumerate(QUEUES)
    ]
    assert [await j.result(timeout=10) for j in jobs] == list(range(len(QUEUES)))


async def test_new_levels_are_discovered_beyond_the_watch(
    app: aioq.App, workers: WorkerRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past WATCH_ALL keys, missing streams are not watched: a multi-key EXISTS now
    # and then (at least every `block`) finds the one that appeared.
    monkeypatch.setattr(reader, "WATCH_ALL", 0)
    echo = _echo(app)
    await workers.start(app, queues=QUEUES, block=0.2)
    await asyncio.sleep(0.3)
    assert await _send(echo, QUEUES[3], 5, priority=9) == 5
    assert await _send(echo, QUEUES[4], 6, priority=2) == 6


async def test_discovery_does_not_wait_for_a_long_watch(
    app: aioq.App, workers: WorkerRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The watch blocks for minutes (its parts' timeouts cost Redis, so they are
    # long); the reader still wakes for each discovery of the streams it does not
    # watch, so a new level's first message waits for the discovery, not the watch.
    monkeypatch.setattr(reader, "WATCH_ALL", 0)
    monkeypatch.setattr(reader, "WATCH_PER_KEY", 1.0)
    echo = _echo(app)
    await workers.start(app, queues=QUEUES, block=0.2)
    await asyncio.sleep(0.3)
    assert await _send(echo, QUEUES[3], 5, priority=9) == 5


async def test_two_workers_share_many_queues(app: aioq.App, workers: WorkerRunner) -> None:
    # Each one's marks go stale as the other reads: early wake-ups, nothing lost.
    ran: list[int] = []

    @app.task(name="note")
    async def note(x: int) -> int:
        ran.append(x)
        await asyncio.sleep(0.001)
        return x

    await workers.start(app, queues=QUEUES, concurrency=5)
    await workers.start(app, queues=QUEUES, concurrency=5)
    await asyncio.sleep(0.2)
    for rnd in range(3):
        jobs = [await note.with_options(queue=q).kiq(rnd * 100 + i) for i, q in enumerate(QUEUES)]
        for job in jobs:
            await job.result(timeout=10)
        await asyncio.sleep(0.15)
    assert sorted(ran) == sorted(r * 100 + i for r in range(3) for i in range(len(QUEUES)))


async def test_a_stop_ends_a_long_watch(
    app: aioq.App, workers: WorkerRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "WATCH_PER_KEY", 1.0)  # a watch would block for minutes
    _echo(app)
    worker = await workers.start(app, queues=QUEUES)
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await workers.stop(worker)
    assert time.monotonic() - started < 3


@on_cluster_too
async def test_each_part_of_a_split_watch_wakes_the_worker(
    app: aioq.App, workers: WorkerRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 queues in 10 parts, each a blocking XREAD of its own that would block for
    # minutes: only an entry in one of its streams (or a stop) ends it. A part that
    # woke is armed again; the others stay armed meanwhile.
    monkeypatch.setattr(reader, "WATCH_PART_MIN", 4)
    monkeypatch.setattr(reader, "WATCH_PER_KEY", 1.0)
    echo = _echo(app)
    worker = await workers.start(app, queues=QUEUES)
    await asyncio.sleep(0.3)
    for rnd in range(2):  # every part wakes, twice, one entry at a time
        for i, q in enumerate(QUEUES):
            assert await _send(echo, q, rnd * 100 + i) == rnd * 100 + i
    # A level stream that never existed is watched from its start by its part.
    assert await _send(echo, QUEUES[5], 7, priority=3) == 7
    started = time.monotonic()
    await workers.stop(worker)
    assert time.monotonic() - started < 3


@on_cluster_too
async def test_delayed_messages_follow_the_due_index(
    app: aioq.App, workers: WorkerRunner, broker_redis: redis.Redis
) -> None:
    echo = _echo(app)
    await workers.start(app, queues=QUEUES)
    jobs = [await echo.with_options(queue=q, delay=0.3).kiq(i) for i, q in enumerate(QUEUES[:5])]
    r = broker_redis
    assert r.zcard(app.keys.due()) >= 1  # the senders' hints
    assert [await j.result(timeout=10) for j in jobs] == list(range(5))
    await asyncio.sleep(0.6)
    assert r.zcard(app.keys.due()) == 0  # nothing waits: every hint removed


async def test_the_sweep_finds_delayed_messages_without_a_hint(
    app: aioq.App, workers: WorkerRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sender that died between its message and its hint (or a message from before
    # the index existed): the sweep over every queue moves it all the same.
    monkeypatch.setattr(pump, "SWEEP_MIN", 0.5)
    echo = _echo(app)
    await workers.start(app, queues=QUEUES)
    await asyncio.sleep(0.2)  # past the first sweep, at start
    job = await echo.with_options(queue=QUEUES[9], delay=0.2).kiq(9)
    r = redis.Redis.from_url(app.url)
    try:
        r.delete(app.keys.due())
    finally:
        r.close()
    assert await job.result(timeout=10) == 9


@on_cluster_too
async def test_a_dead_consumers_entries_are_recovered(
    app: aioq.App, workers: WorkerRunner, broker_redis: redis.Redis
) -> None:
    # Claims follow the pending summaries: only queues where another consumer holds
    # entries (or this worker more than it runs) get a claim.lua.
    echo = _echo(app)
    jobs = [await echo.with_options(queue=q).kiq(i) for i, q in enumerate(QUEUES[20:23])]
    r = broker_redis
    for q in QUEUES[20:23]:
        stream = app.keys.stream(q)
        r.xgroup_create(stream, "workers", id="0", mkstream=True)
        assert r.xreadgroup("workers", "dead-worker", {stream: ">"}, count=10)
    await workers.start(app, queues=QUEUES)
    # claimable after 0.8 x the visibility timeout (2 s) of idleness
    assert [await j.result(timeout=10) for j in jobs] == [0, 1, 2]


async def test_a_busy_queue_does_not_starve_the_many(app: aioq.App, workers: WorkerRunner) -> None:
    # One queue with 400 jobs ahead of 999 queues with 5 each, all sent before the
    # worker starts. A served stream goes to the back of its level: the busy queue
    # is served again only after every other queue was served once, so it starts
    # at most one fetch's worth (the concurrency) before each small queue has
    # started its first job. And every job runs exactly once.
    started: list[tuple[str, int]] = []

    @app.task(name="note")
    async def note(queue: str, x: int) -> None:
        started.append((queue, x))
        await asyncio.sleep(0)

    busy, small = "busy", [f"s{i}" for i in range(999)]
    sent = [("busy", i) for i in range(400)] + [(q, i) for q in small for i in range(5)]
    await note.with_options(queue=busy).kiq_many([(busy, i) for i in range(400)])
    for q in small:
        await note.with_options(queue=q).kiq_many([(q, i) for i in range(5)])
    concurrency = 20
    await workers.start(app, queues=[busy, *small], concurrency=concurrency)
    deadline = time.monotonic() + 60
    while len(started) < len(sent):
        assert time.monotonic() < deadline, f"{len(started)} of {len(sent)} ran"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert sorted(started) == sorted(sent)  # each exactly once
    first = {q: started.index((q, 0)) for q in small}
    last_first = max(first.values())
    busy_before = sum(1 for q, _ in started[:last_first] if q == busy)
    assert busy_before <= 2 * concurrency, (busy_before, last_first)


@on_cluster_too
async def test_groups_are_made_in_one_pipeline_that_says_which_levels_exist(
    app: aioq.App, broker_redis: redis.Redis
) -> None:
    # groups.lua per chunk of queues (per slot group on a cluster): level 0's group
    # from 0, MKSTREAM; the other level streams that exist are named, so a worker of
    # many queues starts knowing which ones are missing.
    session = app.broker.session()
    try:
        broker_redis.xadd(app.keys.stream("b", 4), {"m": b"x"})
        broker_redis.xadd(app.keys.stream("c"), {"m": b"y"})
        queues = ["a", "b", "c", *QUEUES]
        expected = {app.keys.stream(q) for q in queues} | {app.keys.stream("b", 4)}
        assert await session.ensure_groups(queues, chunk=7) == expected
        for q in queues:
            [group] = broker_redis.xinfo_groups(app.keys.stream(q))
            assert group["last-delivered-id"] == b"0-0"  # from the start
        assert await session.ensure_groups(queues) == expected  # BUSYGROUP: fine
    finally:
        await session.aclose()


async def test_a_fetch_marks_a_stream_it_read_short_of_the_count(app: aioq.App) -> None:
    # A stream read short of the count has nothing new left: fetch.lua returns its
    # mark (the last id read) with the entries, so it turns cold without another
    # fetch. A stream read up to the count may hold more: no mark.
    client = connect(app.url)
    try:
        streams = Streams(client, app.keys)
        await streams.ensure_groups(["a", "b"])
        a, b = app.keys.stream("a"), app.keys.stream("b")
        ids = [await client.xadd(a, {"m": b"x"}) for _ in range(3)]
        for _ in range(5):
            await client.xadd(b, {"m": b"y"})
        levels = {a: ("a", 0), b: ("b", 0)}
        entries, marks = await streams.fetch_streams("w1", levels, 5, False)
        assert [e.stream for e in entries] == [a, a, a, b, b]
        assert marks == {a: ids[-1]}
        entries, marks = await streams.fetch_streams("w1", levels, 5, False)
        assert [e.stream for e in entries] == [b, b, b]  # a: nothing new, b: short
        assert set(marks) == {a, b}
    finally:
        await client.aclose()


@on_cluster_too
async def test_a_worker_leaving_many_queues_removes_its_consumers(
    app: aioq.App, workers: WorkerRunner, broker_redis: redis.Redis
) -> None:
    # One pipeline of forget_consumers.lua for all its queues (per slot on a cluster).
    echo = _echo(app)
    worker = await workers.start(app, queues=QUEUES)
    for i, q in enumerate(QUEUES[::5]):
        assert await _send(echo, q, i) == i
    streams = [app.keys.stream(q) for q in QUEUES[::5]]
    assert all(broker_redis.xinfo_consumers(s, "workers") for s in streams)
    await workers.stop(worker)
    assert not [s for s in streams if broker_redis.xinfo_consumers(s, "workers")]


DEAD_AFTER_IDLE = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV))
redis.call('XREADGROUP', 'GROUP', 'workers', 'dead-worker', 'COUNT', 1, 'STREAMS', KEYS[1], '>')
return id
"""


async def test_an_idle_worker_on_thousands_of_queues_still_recovers_in_time(
    app: aioq.App, workers: WorkerRunner, broker_redis: redis.Redis
) -> None:
    # An idle worker's recovery scan skips the streams it found quiet (nothing
    # pending, cold, untouched since), so that it costs nothing on thousands of
    # queues; and its pass runs while it waits for work (not only when its long
    # watch times out). A message another worker takes once this one is idle, and
    # that worker dies: the stream turns hot (a new entry after its mark), the scan
    # sees the dead consumer's entry, and the claim comes within the documented
    # bound: claimable after 0.8 x the visibility timeout (2 s) of idleness, found
    # by a scan at most 0.4 x apart, 1.2 x in all (+1 s for the test's own latency).
    many = [f"q{i}" for i in range(5000)]
    echo = _echo(app)
    job = await echo.with_options(queue=many[1234]).kiq(7)
    r = broker_redis
    stream = app.keys.stream(many[1234])
    [(entry_id, fields)] = r.xrange(stream)
    r.xdel(stream, entry_id)  # sent again below, once the worker is idle
    worker = await workers.start(app, queues=many)
    await asyncio.sleep(3)  # idle: every stream cold, the scans have found them quiet
    assert worker._recovery._scan == set()  # an idle worker's scan looks at nothing
    flat = [x for pair in fields.items() for x in pair]
    r.eval(DEAD_AFTER_IDLE, 1, stream, *flat)
    started = time.monotonic()
    assert await job.result(timeout=10) == 7
    assert time.monotonic() - started < 1.2 * 2.0 + 1.0
