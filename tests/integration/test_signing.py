"""Signed messages against a real worker: signed work runs (also through retries,
delays and workflows), unsigned or forged messages are dead-lettered with reason
``bad signature`` and never run, and the worker carries on."""

from __future__ import annotations

import asyncio

import pytest
import redis

import aioq
from aioq._core.message import new_message
from aioq._core.signing import is_signed
from tests.conftest import WorkerRunner

K1 = "key-one-0123456789abcdef"
K2 = "key-two-0123456789abcdef"


def dead(sync_redis: redis.Redis, app: aioq.App) -> list[dict[str, bytes]]:
    return [
        {k.decode(): v for k, v in fields.items()}
        for _, fields in sync_redis.xrange(app.keys.dead("default"))
    ]


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def signed_app(redis_url: str, prefix: str, keys: list[str], ran: list[object]) -> aioq.App:
    """An app whose ``echo`` task records what it ran; ``flaky`` fails once."""
    app = aioq.App(redis_url, prefix=prefix, visibility_timeout=2.0, signing_keys=keys)

    @app.task(name="echo")
    async def echo(x: object) -> object:
        ran.append(x)
        return x

    @app.task(name="flaky", retries=1, retry_backoff=0.01)
    async def flaky(x: int) -> int:
        ran.append(("flaky", x))
        if len([r for r in ran if r == ("flaky", x)]) == 1:
            raise RuntimeError("first attempt fails")
        return x * 10

    return app


async def test_signed_messages_run_through_retries_delays_and_chains(
    redis_url: str, prefix: str, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    ran: list[object] = []
    app = signed_app(redis_url, prefix, [K1], ran)

    @app.task(name="slow", rate_limit="20/s")
    async def slow(x: int) -> int:
        return x

    @app.periodic(every=0.2, name="tick")
    async def tick() -> None:
        ran.append("tick")

    job = await app.send("echo", [1])
    (entry,) = sync_redis.xrange(app.keys.stream("default"))
    assert is_signed(entry[1][b"m"])  # what lands in Redis is signed
    await workers.start(app, scheduler=True)
    assert await job.result(timeout=10) == 1
    retried = await app.send("flaky", [2])  # the retry is re-encoded: re-signed
    assert await retried.result(timeout=10) == 20
    later = await app.send("echo", [3], delay=0.2)
    flow = await aioq.chain(app.signature("flaky", [4]), app.signature("echo")).kiq()
    assert await later.result(timeout=10) == 3 and await flow.result(timeout=10) == 40
    # kiq_many, and rate-limit deferrals (re-encoded with their reserved slot)
    many = await slow.kiq_many([(i,) for i in range(4)])
    assert [await j.result(timeout=10) for j in many] == [0, 1, 2, 3]
    assert "tick" in ran  # periodic ticks are signed by the scheduler
    assert dead(sync_redis, app) == []
    await app.aclose()


async def test_unsigned_and_forged_messages_are_dead_lettered_never_run(
    redis_url: str, prefix: str, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    ran: list[object] = []
    app = signed_app(redis_url, prefix, [K1], ran)
    await workers.start(app)
    unsigned = aioq.App(redis_url, prefix=prefix)  # no keys: writes plain messages
    other = aioq.App(redis_url, prefix=prefix, signing_keys=[K2])  # a key the worker lacks
    plain_job = await unsigned.send("echo", ["unsigned"])
    forged_job = await other.send("echo", ["forged"])
    # a signed message altered in Redis: one argument byte changed, digest kept
    good = aioq.App(redis_url, prefix=prefix, signing_keys=[K1])
    stream = app.keys.stream("default")
    _, payload = new_message(
        "echo", "default", ["tamper"], {}, max_bytes=1 << 20, signer=good.signer
    )
    sync_redis.xadd(stream, {"m": payload.replace(b"tamper", b"tamped")})
    await wait_for(lambda: len(dead(sync_redis, app)) == 3)
    reasons = sorted(d["reason"].decode() for d in dead(sync_redis, app))
    assert reasons == [
        "bad signature: no signing key matches (forged, altered, or signed with a key "
        "this app does not have)"
    ] * 2 + ["bad signature: the message is not signed"]
    assert ran == []  # none of them ran
    # their ids are not trusted: no record is touched (the waiters time out)
    assert await plain_job.state() is aioq.JobState.QUEUED
    assert await forged_job.state() is aioq.JobState.QUEUED
    assert sync_redis.xlen(stream) == 0
    # the worker carries on with signed work
    assert await (await app.send("echo", ["fine"])).result(timeout=10) == "fine"
    assert ran == ["fine"]
    for a in (app, unsigned, other, good):
        await a.aclose()


async def test_rotation_worker_with_both_keys_runs_old_and_new_signers(
    redis_url: str, prefix: str, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    ran: list[object] = []
    worker_app = signed_app(redis_url, prefix, [K1, K2], ran)
    await workers.start(worker_app)
    old = aioq.App(redis_url, prefix=prefix, signing_keys=[K1])
    new = aioq.App(redis_url, prefix=prefix, signing_keys=[K2, K1])
    jobs = [await old.send("echo", ["old"]), await new.send("echo", ["new"])]
    assert [await j.result(timeout=10) for j in jobs] == ["old", "new"]
    # after the rotation K1 is dropped: what it signed is refused
    await workers.stop_all()
    rotated = signed_app(redis_url, prefix, [K2], ran)
    await workers.start(rotated)
    stale = await old.send("echo", ["stale"])
    assert await (await new.send("echo", ["fresh"])).result(timeout=10) == "fresh"
    await wait_for(lambda: len(dead(sync_redis, rotated)) == 1)
    assert "stale" not in ran and await stale.state() is aioq.JobState.QUEUED
    for a in (worker_app, old, new, rotated):
        await a.aclose()


@pytest.mark.parametrize("keys", [[], [K1]])
async def test_dead_letter_listing_shows_signed_and_unsigned_messages(
    redis_url: str, prefix: str, workers: WorkerRunner, keys: list[str]
) -> None:
    ran: list[object] = []
    app = signed_app(redis_url, prefix, [K1], ran)
    await workers.start(app)
    sender = aioq.App(redis_url, prefix=prefix, signing_keys=[K2])
    job = await sender.send("echo", ["forged"])
    viewer = aioq.App(redis_url, prefix=prefix, signing_keys=keys)
    deadline = asyncio.get_running_loop().time() + 10
    while not (letters := await viewer.dead_letters()):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert [(d.job_id, d.task) for d in letters] == [(job.id, "echo")]
    assert letters[0].reason.startswith("bad signature")
    for a in (app, sender, viewer):
        await a.aclose()
