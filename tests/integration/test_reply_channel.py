"""One reply channel per client (``_transport/replies.py``, issue 14): a job this
client sent while its channel was up is awaited with no SUBSCRIBE and no record
read; every other case (an outcome that came first, an abort, a lost message and
a re-subscription, a waiter in another client) still ends promptly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis

import aioq
from aioq._transport import results
from tests.conftest import WorkerRunner, kill_pubsub
from tests.integration.test_result_waits import wait_for, write_outcome_silently


def replies_of(app: aioq.App) -> Any:
    return app.broker._get().replies  # type: ignore[attr-defined]


async def open_channel(app: aioq.App) -> Any:
    """A first result() opens the client's reply channel; wait until it is confirmed."""
    with pytest.raises(aioq.ResultTimeout):
        await app.job("warm-up").result(timeout=0.05)
    replies = replies_of(app)
    await wait_for(lambda: replies.ready, "the reply channel")
    return replies


def no_record_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(*_: Any) -> None:
        raise AssertionError("the waiter read the record")

    monkeypatch.setattr(results, "read_outcome", refuse)


async def test_a_job_sent_with_the_channel_up_is_awaited_without_round_trips(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()

    @app.task(name="gated")
    async def gated(x: int) -> int:
        await gate.wait()
        return x * 2

    await workers.start(app)
    replies = await open_channel(app)
    job = await gated.kiq(21)
    assert sync_redis.hget(app.keys.job(job.id), "reply") == replies.channel.encode()
    no_record_reads(monkeypatch)
    waiting = asyncio.ensure_future(job.result(timeout=10))
    await wait_for(lambda: sync_redis.hget(app.keys.job(job.id), "state") == b"running", "start")
    # No channel of the job's own is subscribed: only the client's reply channel
    # (and the worker's abort channel).
    assert sorted(sync_redis.pubsub_channels(f"{app.keys.prefix}:*")) == [
        app.keys.abort_channel().encode(),
        replies.channel.encode(),
    ]
    gate.set()
    assert await asyncio.wait_for(waiting, 10) == 42
    assert replies.sent == {} and replies.waiting == {} and replies.early == {}


async def test_an_outcome_that_came_before_result_is_kept(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(name="double")
    async def double(x: int) -> int:
        return x * 2

    await workers.start(app)
    replies = await open_channel(app)
    job = await double.kiq(4)
    key = app.keys.job(job.id).encode()
    await wait_for(lambda: key in replies.early, "the outcome to arrive")
    no_record_reads(monkeypatch)
    assert await job.result(timeout=5) == 8
    assert replies.early == {} and replies.sent == {}
    monkeypatch.undo()
    assert await job.result(timeout=5) == 8  # again: from the record


async def test_abort_wakes_a_waiter_of_the_reply_channel(
    app: aioq.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker: the job is aborted while queued; abort.lua publishes on the reply
    channel its record names, so the waiter wakes at once, not on the slow timer."""
    monkeypatch.setattr(results, "RECHECK_INTERVAL", 120.0)

    @app.task(name="never")
    async def never() -> None:
        return None

    await open_channel(app)
    job = await never.kiq()
    waiting = asyncio.ensure_future(job.result(timeout=30))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    assert await job.abort()
    with pytest.raises(aioq.JobAborted):
        await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 2


async def test_a_lost_reply_is_found_after_the_channel_is_resubscribed(
    named_app: aioq.App, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outcome is written without its message reaching the client (its pub/sub
    connection is killed, and only its own): re-subscribing the reply channel makes
    the waiter read the record, long before its slow timer."""
    monkeypatch.setattr(results, "RECHECK_INTERVAL", 120.0)
    app = named_app

    @app.task(name="lost")
    async def lost() -> int:
        return 0

    replies = await open_channel(app)
    job = await lost.kiq()
    assert app.keys.job(job.id).encode() in replies.sent
    waiting = asyncio.ensure_future(job.result())
    await asyncio.sleep(0.05)
    write_outcome_silently(sync_redis, app, job.id, 42)
    # another client's pub/sub connection (another test's, under pytest -n) lives on
    bystander, channel = sync_redis.pubsub(), f"{app.prefix}:bystander"
    bystander.subscribe(channel)
    bystander.get_message(timeout=1)
    try:
        assert kill_pubsub(sync_redis, app) >= 1
        assert sync_redis.pubsub_numsub(channel) == [(channel.encode(), 1)]
    finally:
        bystander.close()
    assert await asyncio.wait_for(waiting, 10) == 42


async def test_a_waiter_in_another_client_wakes_through_the_job_channel(
    app: aioq.App, workers: WorkerRunner, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record names the sender's reply channel; a waiter in another process
    (another App here) still wakes at once: the outcome goes to the job's own
    channel too."""
    monkeypatch.setattr(results, "RECHECK_INTERVAL", 120.0)
    gate = asyncio.Event()

    @app.task(name="gated2")
    async def gated2() -> str:
        await gate.wait()
        return "done"

    await workers.start(app)
    await open_channel(app)
    job = await gated2.kiq()
    other = aioq.App(redis_url, prefix=app.keys.prefix)
    try:
        waiting = asyncio.ensure_future(other.job(job.id).result(timeout=30))
        await asyncio.sleep(0.2)  # subscribed and looked: nothing yet
        gate.set()
        assert await asyncio.wait_for(waiting, 5) == "done"
    finally:
        await other.aclose()
