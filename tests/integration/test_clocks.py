"""Only Redis time counts (issue 10, items 13-15): worker and scheduler *processes*
whose wall clock is wrong (``tests.clockskew``) must take every due time, lease,
``max_running`` slot, rate decision and schedule tick from Redis ``TIME``.

Each test judges what happened by the Redis clock: the tasks of
``tests.clockapp`` record Redis time, and a stream entry's id is the Redis time
of its XADD.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis

import aioq
from aioq._core.message import decode_message, new_message
from aioq._transport import schedules
from aioq._transport.connection import connect
from tests import clockapp
from tests.integration import test_process
from tests.integration.test_process import Proc

spawn = test_process.spawn  # the worker-process fixture

HOUR = 3600.0


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()  # type: ignore[misc]
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
async def client(redis_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    clockapp.app.__init__(redis_url, prefix=prefix, visibility_timeout=1.0)  # type: ignore[misc]
    for task in (
        clockapp.stamp,
        clockapp.retried,
        clockapp.paced,
        clockapp.exclusive,
        clockapp.half,
    ):
        clockapp.app.registry.add(task.definition)
    yield clockapp.app
    await clockapp.app.aclose()


def worker(spawn: Callable[..., Proc], offset: float, vt: float = 2.0) -> Proc:
    """An ``aioq worker`` process whose wall clock is ``offset`` seconds off."""
    proc = spawn(
        "worker",
        "tests.clockapp:app",
        "-c",
        "10",
        extra_env={"AIOQ_TEST_CLOCK_OFFSET": str(offset), "AIOQ_TEST_VT": str(vt)},
    )
    proc.wait_for_output("task(s) registered")
    return proc


def stop(proc: Proc) -> None:
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(15) == 0, proc.output()
    assert "Traceback" not in proc.output(), proc.output()


# -- item 14: delays and retries (the pump) ------------------------------------------


@pytest.mark.slow
async def test_a_worker_ahead_does_not_run_a_delayed_job_early(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, sync_redis: redis.Redis
) -> None:
    """A worker whose clock is 60 s ahead pumps a job delayed 3 s: it starts no
    earlier than 3 s after it was sent, by the Redis clock."""
    proc = worker(spawn, +60)
    sent_ms = redis_ms(sync_redis)
    job = await clockapp.stamp.with_options(delay=3.0).kiq()
    started_ms = await job.result(timeout=20) // 1000
    assert started_ms - sent_ms >= 2_950, f"started {started_ms - sent_ms} ms after sending"
    print(f"\nworker +60 s, delay 3 s: started {started_ms - sent_ms} ms after sending (Redis)")
    stop(proc)


@pytest.mark.slow
async def test_a_retry_waits_its_delay_by_redis_time(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, sync_redis: redis.Redis, prefix: str
) -> None:
    """A worker 60 s behind asks for a retry in 5 s, and a worker on time joins
    (and pumps): the next attempt starts 5 s later by the Redis clock, not at
    once."""
    behind = worker(spawn, -60)
    job = await clockapp.retried.kiq(5.0)
    deadline = time.monotonic() + 10
    while not sync_redis.llen(f"{prefix}:attempts:{job.id}"):
        assert time.monotonic() < deadline, behind.output()
        await asyncio.sleep(0.02)
    on_time = worker(spawn, 0)
    first, second = await job.result(timeout=20)
    assert second - first >= 4_950_000, f"retried after {(second - first) / 1000:.0f} ms"
    print(f"\nworker -60 s, Retry(delay=5): next attempt {(second - first) / 1000:.0f} ms later")
    stop(behind)
    stop(on_time)


# -- item 13: max_running --------------------------------------------------------------


@pytest.mark.slow
async def test_max_running_holds_with_a_skewed_worker_and_long_jobs(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, sync_redis: redis.Redis, prefix: str
) -> None:
    """``max_running=1``, visibility timeout 1 s, one worker 15 s behind and one on
    time, four jobs of 2.5 s (longer than 2 × the timeout) sent at once: never
    two at once, each long job keeps its slot while others wait, all run."""
    procs = [worker(spawn, -15, vt=1.0), worker(spawn, 0, vt=1.0)]
    jobs = await clockapp.exclusive.kiq_many([(2.5,)] * 4)
    seen = await aioq.gather(*jobs, timeout=60)
    spans = sorted(
        (int(a), int(b), w)
        for a, b, w in (s.decode().split() for s in sync_redis.lrange(f"{prefix}:spans", 0, -1))
    )
    assert len(spans) == 4  # each ran once
    assert max(seen) == 1, f"{max(seen)} ran at once"
    overlaps = [(x, y) for x, y in itertools.pairwise(spans) if y[0] < x[1]]
    assert not overlaps, f"jobs overlapped (Redis µs): {overlaps}"
    # A slot is released once its outcome is written (per job: one round trip later)
    running = client.keys.running(clockapp.exclusive.name)
    deadline = time.monotonic() + 10
    while sync_redis.zcard(running) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert sync_redis.zcard(running) == 0
    gaps = [(y[0] - x[1]) / 1000 for x, y in itertools.pairwise(spans)]
    print(
        f"\nmax_running=1, VT 1 s, workers -15 s and on time, 4 jobs of 2.5 s: at most "
        f"{max(seen)} at once; ran on {len({w for *_, w in spans})} worker(s); "
        f"gaps between jobs {', '.join(f'{g:.0f}' for g in gaps)} ms"
    )
    for proc in procs:
        stop(proc)


# -- rate limits -----------------------------------------------------------------------


@pytest.mark.slow
async def test_rate_limit_deferrals_follow_redis_time(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, sync_redis: redis.Redis, prefix: str
) -> None:
    """A worker 60 s ahead defers rate-limited jobs and leaves; a worker on time
    takes over: the deferred jobs are due by the Redis clock (not a minute
    late), and the starts stay spaced 200 ms apart (5/s)."""
    ahead = worker(spawn, +60)
    jobs = await clockapp.paced.kiq_many([()] * 15)
    deadline = time.monotonic() + 10
    while sync_redis.llen(f"{prefix}:starts") < 3:  # the rest wait for reserved slots
        assert time.monotonic() < deadline, ahead.output()
        await asyncio.sleep(0.02)
    stop(ahead)
    on_time = worker(spawn, 0)
    await aioq.gather(*jobs, timeout=20)
    starts = sorted(int(s) for s in sync_redis.lrange(f"{prefix}:starts", 0, -1))
    assert len(starts) == 15
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Slots are reserved 200 ms apart; a body starts a little after its slot, by
    # however long the loaded machine takes, so compare spans of 5 gaps (6 starts
    # within < 0.8 s would be a rate above 6/s), not single gaps.
    spans = [b - a for a, b in zip(starts, starts[5:], strict=False)]
    assert min(spans) >= 800_000, f"6 starts within {min(spans)} µs at 5/s"
    print(
        f"\n15 jobs at 5/s, deferred by a worker +60 s that then left: all done "
        f"{(starts[-1] - starts[0]) / 1e6:.2f} s after the first start, closest starts "
        f"{min(gaps) / 1000:.0f} ms apart"
    )
    stop(on_time)


# -- item 15: schedules ----------------------------------------------------------------


async def test_a_tick_ahead_of_redis_time_is_refused_and_a_future_last_tick_healed(
    app: aioq.App, sync_redis: redis.Redis
) -> None:
    """tick.lua judges by Redis time: a tick more than the misfire grace ahead is
    not sent (nor remembered); a ``last_ms`` in the future of Redis time (left by
    a scheduler whose clock ran ahead) does not block the tick that is due now."""

    @app.task
    async def beat() -> None:
        pass

    redis_client = connect(app.url)
    state, stream = app.keys.schedule("default", "beat"), app.keys.stream("default")

    async def fire(tick: int) -> bool:
        job_id = f"beat@{tick}"
        _, payload = new_message(beat.name, "default", (), {}, job_id=job_id, max_bytes=1 << 20)
        fired = await schedules.fire(
            redis_client, app.keys, "default", 0, "beat", tick, job_id, payload, 1000
        )
        assert fired.early == (not fired.sent and fired.last_ms < tick - 1000)
        return fired.sent

    try:
        now = redis_ms(sync_redis)
        assert not await fire(now + 60_000)  # a minute ahead of Redis: refused
        assert sync_redis.xlen(stream) == 0 and not sync_redis.exists(state)
        assert await fire(now + 500)  # within the grace: a clock a little ahead is fine
        sync_redis.hset(state, "last_ms", now + 3_600_000)  # an hour ahead: healed
        now = redis_ms(sync_redis)
        assert await fire(now + 600)
        assert int(sync_redis.hget(state, "last_ms")) == now + 600  # type: ignore[arg-type]
        assert not await fire(now + 600)  # and each tick still fires once
        fired_ms = int(sync_redis.hget(state, "fired_ms"))  # type: ignore[arg-type]
        assert abs(fired_ms - now) < 5_000  # stamped by Redis time
    finally:
        await redis_client.aclose()


async def test_a_scheduler_starts_from_a_future_last_tick_at_once(
    app: aioq.App, sync_redis: redis.Redis
) -> None:
    """A schedule whose state says it last fired an hour in the future (of Redis
    time) is not silent for an hour: a new scheduler fires its ticks now."""

    @app.task
    async def beat() -> None:
        pass

    app.schedule(beat.s(), every=0.2, name="beat")
    state = app.keys.schedule("default", "beat")
    sync_redis.hset(state, mapping={"last_ms": redis_ms(sync_redis) + 3_600_000, "last_job": "x"})
    scheduler = aioq.Scheduler(app, connect_timeout=5)
    task = asyncio.create_task(scheduler.run())
    try:
        deadline = time.monotonic() + 10
        while sync_redis.xlen(app.keys.stream("default")) < 3:
            assert time.monotonic() < deadline, "no tick fired"
            assert not task.done()
            await asyncio.sleep(0.05)
        assert int(sync_redis.hget(state, "last_ms")) <= redis_ms(sync_redis) + 1000  # type: ignore[arg-type]
    finally:
        scheduler.stop()
        await asyncio.wait_for(task, 10)


@pytest.mark.slow
def test_a_scheduler_an_hour_ahead_fires_the_right_ticks(  # type: ignore[no-untyped-def]
    spawn, prefix: str, sync_redis: redis.Redis
) -> None:
    """A scheduler process whose clock runs an hour ahead for its first 3 s, then
    is right again; a second one on time joins and the first is SIGKILLed. Every
    tick of the 0.5 s schedule is sent once, none before its time by the Redis
    clock, none missing, and ticks keep coming after the skew (nothing is
    blocked for an hour)."""
    began = redis_ms(sync_redis)
    skewed = spawn(
        "scheduler",
        "tests.clockapp:app",
        extra_env={"AIOQ_TEST_CLOCK_OFFSET": str(HOUR), "AIOQ_TEST_CLOCK_FOR": "3"},
    )
    skewed.wait_for_output("scheduler started")
    time.sleep(4.5)
    normal = spawn("scheduler", "tests.clockapp:app")
    normal.wait_for_output("scheduler started")
    time.sleep(0.5)
    skewed.stop()  # SIGKILL
    time.sleep(2.0)
    normal.popen.send_signal(signal.SIGTERM)
    assert normal.popen.wait(15) == 0, normal.output()
    ended = redis_ms(sync_redis)

    entries = sync_redis.xrange(f"{prefix}:{{default}}:stream")
    fired = []
    for entry_id, fields in entries:
        sent_ms = int(entry_id.split(b"-")[0])  # Redis time of the XADD
        tick = int(decode_message(fields[b"m"]).id.rpartition("@")[2])
        fired.append((tick, sent_ms))
    ticks = sorted(t for t, _ in fired)
    assert ticks, skewed.output()
    assert len(ticks) == len(set(ticks)), f"a tick fired twice: {ticks}"
    early = [(t, s) for t, s in fired if s < t - 250]
    assert not early, f"ticks sent before their time (tick, sent by Redis): {early}"
    assert max(ticks) <= ended + 1000, f"tick {max(ticks) - ended} ms in the future"
    assert min(ticks) >= began - 1000
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != 500]
    assert not gaps, f"ticks missing between {gaps}"
    assert max(ticks) >= ended - 2500, "ticks stopped"
    assert len(ticks) >= 10
    lateness = sorted(sent - tick for tick, sent in fired)
    print(
        f"\nscheduler +1 h for 3 s, then a second one: {len(ticks)} ticks, none missing or "
        f"repeated; sent {lateness[0]}..{lateness[-1]} ms after their tick (Redis time), "
        f"median {lateness[len(lateness) // 2]} ms"
    )
