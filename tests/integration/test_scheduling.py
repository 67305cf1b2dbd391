"""Periodic schedules against a real Redis: every tick once across any number of
schedulers (processes killed and restarted included), restarts, missed ticks and
``catch_up``, Redis outages, ``aioq worker --scheduler`` and ``aioq schedule list``."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

import aioq
from aioq._core.message import decode_message, now_ms
from aioq._core.schedule import next_fire
from aioq._transport.keys import Keyspace
from tests import schedapp
from tests.conftest import WorkerRunner

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


# -- helpers -------------------------------------------------------------------


def fired(r: redis.Redis, keys: Keyspace, *queues: str) -> dict[str, list[int]]:
    """The ticks each schedule sent, from the jobs in the queues' streams (job id
    ``name@tick``), in stream order."""
    out: dict[str, list[int]] = defaultdict(list)
    for queue in queues or ("default",):
        for stream in keys.level_streams(queue):
            for _, fields in r.xrange(stream):
                name, _, tick = decode_message(fields[b"m"]).id.rpartition("@")
                out[name].append(int(tick))
    return out


def last_ms(r: redis.Redis, keys: Keyspace, name: str, queue: str = "default") -> int | None:
    value = r.hget(keys.schedule(queue, name), "last_ms")
    return int(value) if value is not None else None  # type: ignore[arg-type]


def assert_consecutive(ticks: list[int], step_ms: int) -> None:
    assert len(ticks) == len(set(ticks)), f"a tick fired twice: {ticks}"
    ordered = sorted(ticks)
    gaps = [(a, b) for a, b in itertools.pairwise(ordered) if b - a != step_ms]
    assert not gaps, f"ticks missing between {gaps}"


async def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def sleep_until(wall_ms: int) -> None:
    await asyncio.sleep(max(0.0, (wall_ms - now_ms()) / 1000))


class Schedulers:
    """In-process schedulers of a test, all stopped at its end."""

    def __init__(self) -> None:
        self.running: list[tuple[aioq.Scheduler, asyncio.Task[None]]] = []

    async def start(self, app: aioq.App) -> aioq.Scheduler:
        scheduler = aioq.Scheduler(app, connect_timeout=5)
        task = asyncio.create_task(scheduler.run())
        self.running.append((scheduler, task))
        ready = asyncio.create_task(scheduler.ready.wait())
        await asyncio.wait({ready, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert scheduler.ready.is_set(), "scheduler did not start within 10 s"
        return scheduler

    def task(self, scheduler: aioq.Scheduler) -> asyncio.Task[None]:
        return next(t for s, t in self.running if s is scheduler)

    async def stop(self, scheduler: aioq.Scheduler) -> None:
        scheduler.stop()
        await asyncio.wait_for(self.task(scheduler), 10)

    async def stop_all(self) -> None:
        for scheduler, _ in self.running:
            scheduler.stop()
        for _, task in self.running:
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def schedulers() -> AsyncIterator[Schedulers]:
    runner = Schedulers()
    yield runner
    await runner.stop_all()


class Proc:
    """``python -m aioq …`` with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "aioq", *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.popen.poll() is not None:
                raise AssertionError(f"exited with {self.popen.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed in {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def terminate(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(15)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


@pytest.fixture
def spawn(redis_url: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []
    env = {**os.environ, "AIOQ_REDIS_URL": redis_url, "AIOQ_TEST_PREFIX": prefix}
    env["PYTHONPATH"] = str(ROOT)

    def start(*args: str) -> Proc:
        proc = Proc(list(args), env, tmp_path / f"proc{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


# -- exactly once ----------------------------------------------------------------


@pytest.mark.timeout(180)
def test_three_scheduler_processes_for_a_minute_fire_each_tick_once(
    spawn: Callable[..., Proc], prefix: str, sync_redis: redis.Redis
) -> None:
    """Three ``aioq scheduler`` processes for a minute (one SIGKILLed and started
    again on the way): every tick of every schedule is sent exactly once, none
    is missing between the first and the last, and the cron schedule fires at
    each minute boundary crossed. (``make test`` runs until one minute boundary
    has been crossed, at least 12 s; ``AIOQ_CHAOS=full`` the whole 68 s.)"""
    procs = [spawn("scheduler", "tests.schedapp:app") for _ in range(3)]
    for proc in procs:
        proc.wait_for_output("scheduler started")
    started = time.monotonic()
    full = os.environ.get("AIOQ_CHAOS") == "full"
    time.sleep(20 if full else 4)
    procs[0].kill()  # SIGKILL, in the middle of whatever it was doing
    procs.append(spawn("scheduler", "tests.schedapp:app"))
    procs[-1].wait_for_output("scheduler started")
    if full:
        time.sleep(max(0.0, 68 - (time.monotonic() - started)))
    else:  # past the next minute boundary (this host's clock is Redis's)
        boundary_in = 60 - time.time() % 60
        time.sleep(max(12 - (time.monotonic() - started), boundary_in + 2.5))
    for proc in procs[1:]:
        assert proc.terminate() == 0, proc.output()
        assert "received SIGTERM: scheduler stopped" in proc.output()

    keys = Keyspace(prefix)
    ticks = fired(sync_redis, keys, "default", "sched")
    second, quarter = ticks["tests.schedapp.second"], ticks["quarter"]
    minute = ticks["tests.schedapp.minute"]
    assert_consecutive(second, 1000)
    assert_consecutive(quarter, 250)
    assert len(second) >= (60 if full else 10) and len(quarter) >= 4 * len(second) - 8
    # Cron: exactly the minute boundaries within the time the schedulers ran
    # (every whole second in it was fired by the every-second schedule).
    first, last = min(second), max(second)
    expected = [t for t in range(first, last + 1, 1000) if t % 60_000 == 0]
    assert len(expected) >= 1
    assert sorted(minute) == expected
    seoul = schedapp.app.schedules["seoul-morning"]
    assert sorted(ticks.get("seoul-morning", [])) == [
        t for t in expected if next_fire(seoul, t - 1) == t
    ]
    # Each schedule's state remembers its last tick and job.
    assert last_ms(sync_redis, keys, "quarter", "sched") == max(quarter)
    state = sync_redis.hget(keys.schedule("default", "tests.schedapp.second"), "last_job")
    assert state == f"tests.schedapp.second@{last}".encode()
    sent_by = [p.output().count(" fired job ") for p in procs]
    total = len(second) + len(quarter) + len(minute)
    print(
        f"\nthree schedulers: {total} jobs ({len(second)} every-1s, {len(quarter)} every-0.25s, "
        f"{len(minute)} cron), no duplicate, none missing; fired per process {sent_by} "
        f"(process 0 SIGKILLed at ~20 s, process 3 its replacement)"
    )


async def test_concurrent_schedulers_in_one_process(
    app: aioq.App, schedulers: Schedulers, sync_redis: redis.Redis
) -> None:
    @app.task
    async def beat() -> None:
        pass

    app.schedule(beat.s(), every=0.1, name="beat")
    for _ in range(3):
        await schedulers.start(app)
    await asyncio.sleep(3)
    await schedulers.stop_all()
    ticks = fired(sync_redis, app.keys)["beat"]
    assert_consecutive(ticks, 100)
    assert len(ticks) >= 20


# -- restarts, missed ticks, catch_up ----------------------------------------------


async def test_a_quick_restart_repeats_nothing_and_loses_nothing(
    app: aioq.App, schedulers: Schedulers, sync_redis: redis.Redis
) -> None:
    @app.task
    async def beat() -> None:
        pass

    app.schedule(beat.s(), every=0.5, name="beat")
    first = await schedulers.start(app)
    await wait_for(lambda: len(fired(sync_redis, app.keys)["beat"]) >= 4, 10, "4 ticks")
    await schedulers.stop(first)
    before = fired(sync_redis, app.keys)["beat"]
    await schedulers.start(app)  # within the grace: the tick due meanwhile still fires
    await wait_for(lambda: len(fired(sync_redis, app.keys)["beat"]) >= len(before) + 4, 10, "more")
    await schedulers.stop_all()
    assert_consecutive(fired(sync_redis, app.keys)["beat"], 500)


async def test_missed_ticks_after_a_gap_follow_catch_up(
    app: aioq.App, schedulers: Schedulers, sync_redis: redis.Redis
) -> None:
    """No scheduler runs for two ticks: ``catch_up=False`` sends neither,
    ``catch_up=True`` sends one job (the latest) for both; nothing repeats."""

    @app.task
    async def job() -> None:
        pass

    app.schedule(job.s(), every=4.0, name="skip")
    app.schedule(job.s(), every=4.0, name="catch", catch_up=True)
    first = await schedulers.start(app)

    def both_fired() -> int | None:
        skip, catch = last_ms(sync_redis, app.keys, "skip"), last_ms(sync_redis, app.keys, "catch")
        return skip if skip is not None and skip == catch else None

    await wait_for(both_fired, 10, "a first tick")
    k = both_fired()
    assert k is not None
    await schedulers.stop(first)
    # Ticks k+4 s and k+8 s pass with no scheduler; start again halfway to k+12 s.
    await sleep_until(k + 10_000)
    await schedulers.start(app)
    await wait_for(lambda: (last_ms(sync_redis, app.keys, "skip") or 0) >= k + 12_000, 10, "k+12")
    await wait_for(lambda: (last_ms(sync_redis, app.keys, "catch") or 0) >= k + 12_000, 5, "k+12")
    await schedulers.stop_all()
    ticks = fired(sync_redis, app.keys)
    for name in ("skip", "catch"):
        assert len(ticks[name]) == len(set(ticks[name])), f"{name}: a tick fired twice"
    assert [t - k for t in ticks["skip"] if t >= k] == [0, 12_000]
    assert [t - k for t in ticks["catch"] if t >= k] == [0, 8_000, 12_000]


async def test_a_redis_outage_is_ridden_out(
    caplog: pytest.LogCaptureFixture, prefix: str, sync_redis: redis.Redis
) -> None:
    """Redis dies for two ticks and comes back with its data: the scheduler keeps
    running, logs the outage once, and the missed ticks follow ``catch_up``."""
    from tests.chaos.harness import RedisServer

    server = RedisServer(aof=True)
    app = aioq.App(server.url, prefix=prefix)
    runner = Schedulers()
    try:

        @app.task
        async def job() -> None:
            pass

        app.schedule(job.s(), every=3.0, name="skip")
        app.schedule(job.s(), every=3.0, name="catch", catch_up=True)
        caplog.set_level(logging.INFO, logger="aioq.scheduler")
        r = server.client()
        scheduler = await runner.start(app)

        def both_fired() -> int | None:
            skip, catch = last_ms(r, app.keys, "skip"), last_ms(r, app.keys, "catch")
            return skip if skip is not None and skip == catch else None

        await wait_for(both_fired, 10, "a first tick")
        k = both_fired()
        assert k is not None
        server.kill()
        await sleep_until(k + 7_300)  # ticks k+3 s and k+6 s pass while Redis is down
        await asyncio.to_thread(server.start)
        await wait_for(lambda: (last_ms(r, app.keys, "skip") or 0) >= k + 9_000, 10, "k+9")
        await wait_for(lambda: (last_ms(r, app.keys, "catch") or 0) >= k + 9_000, 5, "k+9")
        assert not runner.task(scheduler).done()
        await runner.stop_all()
        ticks = fired(r, app.keys)
        assert [t - k for t in ticks["skip"] if t >= k] == [0, 9_000]
        assert [t - k for t in ticks["catch"] if t >= k] == [0, 6_000, 9_000]
        messages = [rec.getMessage() for rec in caplog.records]
        assert sum("Redis failed" in m for m in messages) == 1
        assert sum("Redis answers again" in m for m in messages) == 1
        r.close()
    finally:
        await runner.stop_all()
        await app.aclose()
        server.stop()


# -- where schedulers run ------------------------------------------------------


async def test_a_worker_with_scheduler_runs_periodic_tasks(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.periodic(every=0.5)
    async def heartbeat(ctx: aioq.Context) -> str:
        return ctx.job_id

    await workers.start(app, scheduler=True)
    key = app.keys.schedule("default", heartbeat.name)
    seen: set[str] = set()

    def three_jobs() -> bool:
        job_id = sync_redis.hget(key, "last_job")
        if job_id is not None:
            seen.add(job_id.decode())  # type: ignore[union-attr]
        return len(seen) >= 3

    await wait_for(three_jobs, 10, "three periodic jobs")
    for job_id in seen:
        assert await app.job(job_id).result(timeout=10) == job_id
        assert job_id.startswith(f"{heartbeat.name}@")


def test_worker_command_with_scheduler_and_two_processes(
    spawn: Callable[..., Proc], prefix: str, sync_redis: redis.Redis
) -> None:
    """``aioq worker --scheduler -w 2``: both processes schedule; each tick runs once."""
    proc = spawn("worker", "tests.schedapp:app", "--scheduler", "-w", "2")
    deadline = time.monotonic() + 20
    keys = Keyspace(prefix)
    pattern = f"{keys.job('tests.schedapp.second@')}*"
    while len(list(sync_redis.scan_iter(match=pattern))) < 4:
        assert time.monotonic() < deadline, proc.output()
        time.sleep(0.1)
    assert proc.terminate() == 0
    assert proc.output().count("scheduler started") == 2
    records = {k.decode(): sync_redis.hgetall(k) for k in sync_redis.scan_iter(match=pattern)}
    ticks = [int(k.rpartition("@")[2]) for k in records]
    assert_consecutive(ticks, 1000)
    for record in records.values():
        if record[b"state"] != b"running":  # the last may have been cut by the stop
            assert record[b"state"] == b"succeeded"
        assert record[b"attempts"] == b"1"  # no tick's job was sent (and run) twice


def test_schedule_list_shows_next_and_last_runs(
    spawn: Callable[..., Proc], prefix: str, sync_redis: redis.Redis
) -> None:
    proc = spawn("scheduler", "tests.schedapp:app")
    proc.wait_for_output("fired job tests.schedapp.second@")
    assert proc.terminate() == 0
    listing = spawn("schedule", "list", "tests.schedapp:app")
    assert listing.popen.wait(15) == 0
    out = listing.output()
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["NAME"].split() == [
        "NAME",
        "TASK",
        "SPEC",
        "QUEUE",
        "SOURCE",
        "STATE",
        "NEXT",
        "RUN",
        "LAST",
        "RUN",
        "LAST",
        "JOB",
    ]
    keys = Keyspace(prefix)
    second = lines["tests.schedapp.second"].split()
    last_job = sync_redis.hget(keys.schedule("default", "tests.schedapp.second"), "last_job")
    assert second[-1] == last_job.decode()  # type: ignore[union-attr]
    assert second[-2] < second[-3]  # last run before next run (same zone, ISO sorts)
    seoul = lines["seoul-morning"].split()
    assert seoul[-1] == seoul[-2] == "-"  # never fired
    assert seoul[-3].endswith("T09:00:00+09:00")  # next run, in the schedule's zone
    assert "every 0.25s" in lines["quarter"] and "(Asia/Seoul)" in lines["seoul-morning"]
    assert second[second.index("default") + 1 :][:2] == ["code", "active"]
    assert "4 schedule(s)" in out
