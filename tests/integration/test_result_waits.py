"""``job.result(timeout=…)`` always returns or raises within its deadline (issue 10, item 1).

Fresh client processes racing their first calls, pub/sub connections killed at
random moments under thousands of waiters, a Redis that does not answer, lost
wake-ups: each ends with the value or ``ResultTimeout`` within ``timeout`` plus a
small bound, and a client holds at most one pub/sub connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

import aioq
from aioq._core.message import JobState, Outcome, encode, now_ms
from aioq._transport import results
from tests.conftest import WorkerRunner, _load_with_redis, kill_pubsub, pubsub_clients

ROOT = Path(__file__).resolve().parents[2]

BOUND = 1.0
"""Seconds past its timeout a ``result()`` call may take to return or raise."""


async def wait_for(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def write_outcome_silently(client: redis.Redis, app: aioq.App, job_id: str, value: int) -> None:
    """Finish a job the way a worker would, but without publishing: a lost wake-up."""
    outcome = Outcome(JobState.SUCCEEDED.value, now_ms(), msgspec.Raw(encode(value)))
    client.hset(app.keys.job(job_id), mapping={"state": "succeeded", "outcome": encode(outcome)})


# -- a burst of first calls in fresh processes -------------------------------------


@pytest.mark.slow
async def test_fresh_process_bursts(
    app: aioq.App, workers: WorkerRunner, redis_url: str, prefix: str
) -> None:
    """100 ``kiq()`` + ``result(timeout=3)`` within the first 0.5 s of each of 8 fresh
    processes: every call returns its value within 3 + 1 s, and each process holds
    at most one pub/sub connection. (Before: in most runs ~98 calls never returned,
    the process holding two or more pub/sub connections.)"""

    @app.task(name="burst.echo")
    async def echo(x: int) -> int:
        return x

    await workers.start(app, concurrency=100)
    calls, timeout, runs = 100, 3.0, 8
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": redis_url,
        "AIOQ_TEST_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }

    async def run(i: int) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.burst",
            str(calls),
            str(timeout),
            env={**env, "AIOQ_BURST_NAME": f"{prefix}-burst{i}"},
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout + 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"burst process {i} did not exit") from None
        assert proc.returncode == 0, err.decode(errors="replace")
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        report["run"] = i
        del report["jobs"], report["timeout_states"]
        return report

    reports: list[dict[str, Any]] = []
    for i in range(0, runs, 2):  # two at a time: the machine is small
        reports += await asyncio.gather(run(i), run(i + 1))
    print("\n" + "\n".join(json.dumps(r) for r in reports))
    assert [r["hung"] for r in reports] == [0] * runs
    assert [r["errors"] for r in reports] == [[]] * runs
    assert [r["ok"] for r in reports] == [calls] * runs
    assert max(r["slowest"] for r in reports) <= timeout + BOUND
    assert max(r["pubsub_peak"] for r in reports) <= 1


# -- pub/sub connections killed under thousands of waiters ---------------------------


@pytest.mark.slow
async def test_pubsub_killed_at_random_while_2000_wait(
    app: aioq.App,
    named_app: aioq.App,
    workers: WorkerRunner,
    sync_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The client's pub/sub connection killed at random moments while 2,000 waiters
    wait: every one gets its result, the client never holds more than one pub/sub
    connection, and nothing fails on the side. (Before: thousands of leaked connections, and
    subscribe/unsubscribe tasks failing with "read() called while another coroutine
    is already waiting" and RecursionError.)"""
    name = named_app.redis_options["client_name"]

    async def nap(x: int, ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return x

    app.task(name="nap")(nap)  # the worker's app (its own connections, unnamed)
    await workers.start(app, concurrency=500)
    task = named_app.task(name="nap")(nap)  # the client's
    rng = random.Random()
    jobs = await task.kiq_many([(i, rng.randint(100, 1500)) for i in range(2000)])
    waits = asyncio.gather(*(job.result(timeout=30) for job in jobs))
    kills, peak = 0, 0
    while not waits.done():
        await asyncio.sleep(rng.uniform(0.02, 0.3))
        mine = pubsub_clients(sync_redis, name)  # not other tests' (pytest -n)
        peak = max(peak, len(mine))
        kills += sum(int(sync_redis.client_kill_filter(_id=c["id"])) for c in mine)
    assert await waits == list(range(2000))
    print(f"\n2000 waiters, {kills} pub/sub connections killed, peak {peak}")
    assert kills >= 3
    assert peak <= 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- a Redis that does not answer ------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[Any]:
    """A redis-server of this test's own, which it may SIGSTOP."""
    binary = shutil.which("redis-server")
    assert binary is not None
    server = _load_with_redis().PrivateRedis(binary)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


@pytest.mark.parametrize("warm", [False, True], ids=["fresh-client", "subscribed-client"])
async def test_result_timeout_when_redis_does_not_answer(private_redis: Any, warm: bool) -> None:
    """A SIGSTOPped Redis accepts connections and answers nothing: ``result(timeout=1)``
    raises ``ResultTimeout`` within 1 + 1 s, whether the client has to connect, or its
    pub/sub connection is up and the new SUBSCRIBE goes unanswered. (Before: it hung,
    the deadline only starting once subscribed.)"""
    app = aioq.App(private_redis.url, prefix="stopped")
    try:
        if warm:  # the pub/sub connection and a pooled one are up
            with pytest.raises(aioq.ResultTimeout):
                await app.job("warm-up").result(timeout=0.2)
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(aioq.ResultTimeout):
                await asyncio.wait_for(app.job("never").result(timeout=1), 1 + BOUND)
            print(f"\nResultTimeout after {time.monotonic() - started:.2f}s")
        finally:
            os.kill(private_redis.proc.pid, signal.SIGCONT)
        # Redis answers again: the same client works.
        with pytest.raises(aioq.ResultTimeout):
            await asyncio.wait_for(app.job("again").result(timeout=0.5), 10)
    finally:
        await asyncio.wait_for(app.aclose(), 10)


async def test_a_pubsub_connection_redis_stopped_answering_is_replaced(
    private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stops answering (SIGSTOP) while a SUBSCRIBE is unanswered: after
    ``operation_timeout`` the reader drops that connection and keeps trying; once
    Redis answers again a waiter without a deadline gets its result."""
    app = aioq.App(private_redis.url, prefix="stalled", operation_timeout=1.0)
    sync = redis.Redis.from_url(private_redis.url)
    try:
        with pytest.raises(aioq.ResultTimeout):
            await app.job("warm-up").result(timeout=0.2)
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
        try:
            waiting = asyncio.ensure_future(app.job("later").result())
            await wait_for(lambda: "Redis did not answer within 1s" in caplog.text, "the stall", 10)
        finally:
            os.kill(private_redis.proc.pid, signal.SIGCONT)
        write_outcome_silently(sync, app, "later", 5)  # found after re-subscribing
        assert await asyncio.wait_for(waiting, 10) == 5
    finally:
        sync.close()
        await asyncio.wait_for(app.aclose(), 10)


async def test_a_quiet_pubsub_connection_is_pinged(
    named_app: aioq.App,
    sync_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While waiters wait and nothing arrives, the reader PINGs its connection; the
    pongs keep it healthy (no reconnect)."""
    monkeypatch.setattr(results, "IDLE_PING", 0.1)
    app = named_app
    name = app.redis_options["client_name"]
    waiting = asyncio.ensure_future(app.job("quiet").result())
    await wait_for(
        lambda: any(c["cmd"] == "ping" for c in pubsub_clients(sync_redis, name)), "a PING"
    )
    await asyncio.sleep(2.5)  # several ticks of PING and PONG
    assert len(pubsub_clients(sync_redis, name)) == 1
    assert "pub/sub connection lost" not in caplog.text
    write_outcome_silently(sync_redis, app, "quiet", 1)
    outcome = sync_redis.hget(app.keys.job("quiet"), "outcome")
    sync_redis.publish(app.keys.done_channel("quiet"), outcome)
    assert await asyncio.wait_for(waiting, 5) == 1


# -- lost wake-ups -----------------------------------------------------------------------


async def test_no_deadline_still_finds_an_outcome_after_a_resubscribe(
    named_app: aioq.App, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``result(timeout=None)``: an outcome written while the notification was lost
    (no PUBLISH), then the pub/sub connection killed: the waiter re-reads the record
    after re-subscribing, long before its slow timer."""
    monkeypatch.setattr(results, "RECHECK_INTERVAL", 120.0)
    app = named_app
    job = app.job("silent")
    waiting = asyncio.ensure_future(job.result())
    channel = app.keys.done_channel(job.id)
    await wait_for(lambda: sync_redis.pubsub_numsub(channel)[0][1] == 1, "the subscription")
    write_outcome_silently(sync_redis, app, job.id, 42)
    assert kill_pubsub(sync_redis, app) >= 1
    assert await asyncio.wait_for(waiting, 10) == 42


async def test_slow_timer_finds_an_outcome_whose_notification_was_lost(
    named_app: aioq.App, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results, "RECHECK_INTERVAL", 0.2)
    app = named_app
    job = app.job("silent2")
    waiting = asyncio.ensure_future(job.result())
    channel = app.keys.done_channel(job.id)
    await wait_for(lambda: sync_redis.pubsub_numsub(channel)[0][1] == 1, "the subscription")
    write_outcome_silently(sync_redis, app, job.id, 7)
    assert await asyncio.wait_for(waiting, 10) == 7


# -- clean-up ------------------------------------------------------------------------------


async def test_waiters_leave_no_subscriptions_and_aclose_closes_the_connection(
    named_app: aioq.App, sync_redis: redis.Redis
) -> None:
    """Timed-out and cancelled waiters are removed and their channels unsubscribed
    (only the client's own reply channel stays, subscribed once for the jobs it
    sends: replies.py); ``aclose()`` closes every connection."""
    app = named_app
    name = app.redis_options["client_name"]
    timed_out = [app.job(f"t{i}").result(timeout=0.3) for i in range(300)]
    cancelled = [asyncio.ensure_future(app.job(f"c{i}").result()) for i in range(300)]
    outcomes = await asyncio.gather(*timed_out, return_exceptions=True)
    assert all(isinstance(o, aioq.ResultTimeout) for o in outcomes)
    for fut in cancelled:
        fut.cancel()
    await asyncio.gather(*cancelled, return_exceptions=True)

    def subscribed() -> int:
        conns = pubsub_clients(sync_redis, name)
        assert len(conns) <= 1
        return sum(int(c["sub"]) for c in conns)

    await wait_for(lambda: subscribed() == 1, "the channels to be unsubscribed")
    assert sync_redis.pubsub_channels(f"{app.keys.prefix}:*") == [
        app.broker._get().replies.channel.encode()  # type: ignore[attr-defined]
    ]
    await app.aclose()

    def connections() -> int:
        return sum(1 for c in sync_redis.client_list() if c.get("name") == name)

    await wait_for(lambda: connections() == 0, "the client's connections to close")


# -- job.updates() ---------------------------------------------------------------------------


async def test_updates_through_a_killed_pubsub_connection(
    named_app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    """``job.updates()`` ends with the final state even when the pub/sub connection is
    killed while it watches (progress reports sent meanwhile may be missed)."""
    app = named_app
    proceed = asyncio.Event()

    @app.task
    async def steps(ctx: aioq.Context) -> str:
        await ctx.progress(1, total=3)
        await proceed.wait()
        await ctx.progress(2, total=3)
        await asyncio.sleep(0.05)
        await ctx.progress(3, total=3)
        return "done"

    await workers.start(app)
    job = await steps.kiq()
    states: list[aioq.JobState] = []

    async def watch() -> None:
        async for update in job.updates():
            states.append(update.state)
            if update.progress is not None and update.progress.current == 1:
                kill_pubsub(sync_redis, app)
                proceed.set()

    await asyncio.wait_for(watch(), 15)
    assert states[-1] is aioq.JobState.SUCCEEDED
    assert await job.result(timeout=5) == "done"
