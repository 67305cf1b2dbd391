"""The public API end to end, against a real Redis and an in-process worker."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
import uuid

import msgspec
import pytest
import redis

import aioq
from tests.conftest import WorkerRunner, both_record_modes, on_cluster_too


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Order(msgspec.Struct):
    id: uuid.UUID
    placed: dt.datetime
    lines: list[Point]


@both_record_modes
async def test_kiq_and_result(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    worker = await workers.start(app)
    assert worker.streams.batch_records is app.broker.batch_records  # type: ignore[attr-defined]
    job = await add.kiq(1, 2)
    assert isinstance(job.id, str) and job.id
    assert await job.result(timeout=10) == 3
    assert await job.state() is aioq.JobState.SUCCEEDED


@both_record_modes
async def test_sync_task_runs_in_a_thread(app: aioq.App, workers: WorkerRunner) -> None:
    import threading

    main_thread = threading.get_ident()

    @app.task(name="math.mul", queue="math")
    def mul(x: int, y: int) -> tuple[int, bool]:
        return x * y, threading.get_ident() != main_thread

    await workers.start(app)
    assert mul.queue == "math"
    assert await (await mul.kiq(6, 7)).result(timeout=10) == (42, True)


async def test_direct_call_runs_locally(app: aioq.App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def mul(x: int, y: int) -> int:
        return x * y

    assert await add(1, 2) == 3
    assert mul(2, 3) == 6


async def test_send_by_name_and_job_from_id(
    app: aioq.App, workers: WorkerRunner, redis_url: str, prefix: str
) -> None:
    @app.task(name="math.mul", queue="math")
    def mul(x: int, y: int) -> int:
        return x * y

    await workers.start(app)
    # A second App stands for another process that never imported the task.
    other = aioq.App(redis_url, prefix=prefix)
    try:
        job = await other.send("math.mul", args=[2, 3], kwargs={}, queue="math")
        assert await job.result(timeout=10) == 6
        again = other.job(job.id)
        assert await again.result(timeout=1) == 6
        info = await again.info()
        assert info.state is aioq.JobState.SUCCEEDED
        assert info.task == "math.mul" and info.queue == "math"
        assert info.attempts == 1 and info.result == 6 and info.worker
        assert info.enqueued_at and info.started_at and info.finished_at
        assert info.enqueued_at <= info.started_at <= info.finished_at
    finally:
        await other.aclose()


async def test_send_uses_the_registered_tasks_queue(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task(name="math.mul", queue="math")
    def mul(x: int, y: int) -> int:
        return x * y

    await workers.start(app, queues=["math"])
    assert await (await app.send("math.mul", args=[3, 3])).result(timeout=10) == 9


async def test_with_options_overrides_the_queue(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task(queue="first")
    async def where(ctx: aioq.Context) -> str:
        return ctx.queue

    other = where.with_options(queue="other")
    assert other.queue == "other" and where.queue == "first"
    await workers.start(app, queues=["first", "other"])
    assert await (await other.kiq()).result(timeout=10) == "other"
    assert await (await where.kiq()).result(timeout=10) == "first"


@both_record_modes
async def test_failure_carries_the_remote_error(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def boom(n: int) -> None:
        raise ValueError(f"bad value {n}")

    await workers.start(app)
    job = await boom.kiq(7)
    with pytest.raises(aioq.TaskFailed) as err:
        await job.result(timeout=10)
    assert err.value.type == "ValueError"
    assert err.value.message == "bad value 7"
    assert "raise ValueError" in err.value.traceback
    assert err.value.job_id == job.id
    assert await job.state() is aioq.JobState.FAILED
    info = await job.info()
    assert info.error is not None and info.error.type == "ValueError"


async def test_context_is_injected_and_not_sent(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def who(ctx: aioq.Context, n: int) -> dict[str, object]:
        return {
            "id": ctx.job_id,
            "task": ctx.task_name,
            "queue": ctx.queue,
            "attempt": ctx.attempt,
            "same_app": ctx.app is app,
            "n": n,
        }

    @app.task
    def who_sync(n: int, context: aioq.Context) -> str:
        return f"{n}:{context.job_id}"

    await workers.start(app)
    job = await who.kiq(5)
    got = await job.result(timeout=10)
    assert got == {
        "id": job.id,
        "task": who.name,
        "queue": "default",
        "attempt": 1,
        "same_app": True,
        "n": 5,
    }
    job2 = await who_sync.kiq(3)
    assert await job2.result(timeout=10) == f"3:{job2.id}"


async def test_typed_values_round_trip(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def echo(
        order: Order, when: dt.datetime, ids: list[uuid.UUID], points: dict[str, Point]
    ) -> Order:
        assert isinstance(order, Order) and isinstance(order.lines[0], Point)
        assert isinstance(when, dt.datetime) and isinstance(ids[0], uuid.UUID)
        assert isinstance(points["a"], Point)
        return order

    await workers.start(app)
    order = Order(uuid.uuid4(), dt.datetime.now(dt.UTC), [Point(1, 2), Point(3, 4)])
    job = await echo.kiq(
        order, dt.datetime(2030, 1, 1, tzinfo=dt.UTC), [uuid.uuid4()], {"a": Point(5, 6)}
    )
    back = await job.result(timeout=10)
    assert back == order and isinstance(back, Order)


async def test_result_timeout(app: aioq.App) -> None:
    @app.task
    async def never() -> None: ...

    job = await never.kiq()  # no worker
    with pytest.raises(aioq.ResultTimeout):
        await job.result(timeout=0.2)
    with pytest.raises(TimeoutError):
        await job.result(timeout=0.1)
    assert await job.state() is aioq.JobState.QUEUED


async def test_task_timeout_fails_the_job(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task(timeout=0.2)
    async def slow() -> None:
        await asyncio.sleep(30)

    await workers.start(app)
    with pytest.raises(aioq.TaskFailed) as err:
        await (await slow.kiq()).result(timeout=10)
    assert err.value.type == "TimeoutError" and "timed out after 0.2s" in err.value.message
    # a per-call timeout overrides the task's
    with pytest.raises(aioq.TaskFailed, match="timed out after 0.1s"):
        await (await slow.with_options(timeout=0.1).kiq()).result(timeout=10)


async def test_store_result_false_and_result_ttl(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task(store_result=False)
    async def quiet() -> int:
        return 41

    @app.task(result_ttl=600.0)
    async def short() -> int:
        return 1

    await workers.start(app)
    q = await quiet.kiq()
    assert await q.result(timeout=10) is None
    assert await q.state() is aioq.JobState.SUCCEEDED
    s = await short.kiq()
    assert await s.result(timeout=10) == 1
    ttl = sync_redis.ttl(app.keys.job(s.id))
    assert 590 <= ttl <= 600
    longer = await short.with_options(result_ttl=5000.0).kiq()
    await longer.result(timeout=10)
    assert 4990 <= sync_redis.ttl(app.keys.job(longer.id)) <= 5000


@on_cluster_too
async def test_messages_sent_before_any_worker_are_processed(
    app: aioq.App, workers: WorkerRunner
) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    jobs = [await add.kiq(i, i) for i in range(20)]  # the stream has no group yet
    await workers.start(app)
    assert [await j.result(timeout=10) for j in jobs] == [2 * i for i in range(20)]


@both_record_modes
async def test_many_concurrent_kiq_and_result(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    await workers.start(app, concurrency=50)
    jobs = await asyncio.gather(*(add.kiq(i, 1) for i in range(1000)))
    assert len({j.id for j in jobs}) == 1000
    results = await asyncio.gather(*(j.result(timeout=30) for j in jobs))
    assert results == [i + 1 for i in range(1000)]
    many = await add.kiq_many([(i, 2) for i in range(500)])
    assert await asyncio.gather(*(j.result(timeout=30) for j in many)) == [
        i + 2 for i in range(500)
    ]


async def test_message_too_large_is_refused_before_writing(
    app: aioq.App, sync_redis: redis.Redis
) -> None:
    small = aioq.App(app.url, prefix=app.prefix, max_message_bytes=1000)

    @small.task
    async def take(blob: str) -> None: ...

    with pytest.raises(aioq.MessageTooLarge, match="over max_message_bytes=1000"):
        await take.kiq("x" * 2000)
    with pytest.raises(aioq.MessageTooLarge):
        await small.send("anything", args=["y" * 2000])
    assert sync_redis.exists(small.keys.stream("default")) == 0
    await small.aclose()


async def test_unencodable_argument_is_a_type_error(app: aioq.App) -> None:
    @app.task
    async def take(x: object) -> None: ...

    with pytest.raises(TypeError):
        await take.kiq(object())


@both_record_modes
async def test_stream_keeps_only_live_work(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    @app.task
    async def noop() -> None: ...

    await workers.start(app)
    jobs = await noop.kiq_many([()] * 200)
    await asyncio.gather(*(j.result(timeout=10) for j in jobs))
    stream = app.keys.stream("default")
    await asyncio.sleep(0.05)
    assert sync_redis.xlen(stream) == 0
    assert sync_redis.xpending(stream, "workers")["pending"] == 0


async def test_unknown_app_config_is_rejected() -> None:
    with pytest.raises(aioq.ConfigurationError):
        aioq.App("redis://127.0.0.1:1/0", prefix="bad{prefix}")
    app = aioq.App("redis://127.0.0.1:1/0")
    with pytest.raises(aioq.ConfigurationError):

        @app.task(queue="")
        async def nowhere() -> None: ...

    @app.task
    async def t() -> None: ...

    with pytest.raises(aioq.ConfigurationError):
        t.with_options(timeout=-1)


async def test_unreachable_redis_raises_broker_unavailable() -> None:
    app = aioq.App("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)

    @app.task
    async def t() -> None: ...

    with pytest.raises(aioq.BrokerUnavailable, match="cannot reach Redis"):
        await t.kiq()
    with pytest.raises(aioq.BrokerUnavailable):
        await app.job("x").state()
    await app.aclose()


async def test_info_of_a_queued_job(app: aioq.App, sync_redis: redis.Redis) -> None:
    @app.task(queue="mail")
    async def send_mail(to: str) -> None: ...

    before = dt.datetime.now(dt.UTC)
    sent = [
        await send_mail.kiq("a@example.com"),
        await app.send(send_mail.name, ["b@example.com"]),
        *(await send_mail.kiq_many([("c@example.com",)])),
    ]
    for job in sent:
        info = await job.info()
        assert info.state is aioq.JobState.QUEUED
        assert (info.task, info.queue) == (send_mail.name, "mail")
        assert info.enqueued_at is not None
        assert abs((info.enqueued_at - before).total_seconds()) < 5
        assert info.started_at is None and info.attempts == 0
        # No TTL while its message waits (it lives as long as the message); the
        # job's own result_ttl is kept for when it ends.
        assert sync_redis.ttl(app.keys.job(job.id)) == -1
        assert sync_redis.hget(app.keys.job(job.id), "result_ttl_ms") == b"86400000"


async def test_option_precedence_reaches_the_record(app: aioq.App, sync_redis: redis.Redis) -> None:
    """call > task > routing rule > app, for the TTL a send gives the job's record."""

    @app.task(result_ttl=5.0)
    async def brief() -> None: ...

    @app.task(name="reports.daily")
    async def daily() -> None: ...

    app.routes({"reports.*": {"queue": "reports", "priority": 3}})

    def pttl(job: aioq.Job[None]) -> int:
        return int(sync_redis.pttl(app.keys.job(job.id)))

    def kept(job: aioq.Job[None]) -> int:
        """A job sent to run now: its record has no TTL yet, and keeps its result_ttl."""
        assert pttl(job) == -1
        return int(sync_redis.hget(app.keys.job(job.id), "result_ttl_ms") or 0)

    # a delay is added to the task's result_ttl, not to the app's
    assert 14_000 < pttl(await brief.with_options(delay=10).kiq()) <= 15_000
    assert kept(await brief.kiq()) == 5_000
    assert kept(await app.send(brief.name)) == 5_000
    assert kept(await app.send(brief.name, delay=0)) == 5_000
    assert kept(await brief.with_options(result_ttl=100.0).kiq()) == 100_000
    assert 109_000 < pttl(await app.send(brief.name, result_ttl=100.0, delay=10)) <= 110_000
    # the app's default where neither the call nor the task says
    routed = await daily.kiq()
    assert kept(routed) == 86_400_000
    assert (await routed.info()).queue == "reports"
    assert sync_redis.xlen(app.keys.stream("reports", 3)) == 1  # the rule's priority
    assert (await (await daily.with_options(queue="elsewhere").kiq()).info()).queue == "elsewhere"


@pytest.mark.parametrize("skew", [60.0, -60.0])
async def test_a_delay_counts_from_redis_time_not_the_senders_clock(
    app: aioq.App,
    workers: WorkerRunner,
    sync_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    skew: float,
) -> None:
    @app.task
    async def stamp(n: int) -> float:
        return time.time()

    real_time, real_ns = time.time, time.time_ns
    with monkeypatch.context() as clock:  # only the sender's clock is wrong
        clock.setattr(time, "time", lambda: real_time() + skew)
        clock.setattr(time, "time_ns", lambda: real_ns() + int(skew * 1e9))
        sent = real_time()
        jobs = [
            await stamp.with_options(delay=1.0).kiq(1),
            await stamp.with_options(delay=1.0, unique_for=30.0).kiq(2),
            await stamp.with_options(delay=1.0, job_id="skewed").kiq(3),
        ]
    seconds, micros = sync_redis.time()
    redis_now_ms = seconds * 1000 + micros // 1000
    for job in jobs:
        due = int(sync_redis.hget(app.keys.job(job.id), "due_ms") or 0)
        assert abs(due - (redis_now_ms + 1000)) < 1000, (job, due - redis_now_ms)
    for _, score in sync_redis.zrange(app.keys.delayed("default"), 0, -1, withscores=True):
        assert abs(score - (redis_now_ms + 1000)) < 1000
    await workers.start(app)
    for ran in await asyncio.gather(*(j.result(timeout=10) for j in jobs)):
        assert ran - sent >= 0.9  # not at once (clock behind), not a minute late (ahead)


async def test_sends_after_redis_lost_its_scripts_write_each_thing_once(
    app: aioq.App, sync_redis: redis.Redis
) -> None:
    """A pipeline is not a transaction: after NOSCRIPT only the refused record
    script is sent again, never the XADD that went through."""

    @app.task
    async def noop() -> None: ...

    sync_redis.script_flush()
    job = await noop.kiq()
    sync_redis.script_flush()
    many = await noop.kiq_many([()] * 3)
    sync_redis.script_flush()
    later = await noop.with_options(delay=30).kiq()
    sync_redis.script_flush()
    once = await noop.with_options(unique_for=30).kiq()
    assert sync_redis.xlen(app.keys.stream("default")) == 5
    assert sync_redis.zcard(app.keys.delayed("default")) == 1
    for sent in (job, *many, once):
        assert await sent.state() is aioq.JobState.QUEUED
        assert sync_redis.exists(app.keys.job(sent.id))
    assert await later.state() is aioq.JobState.SCHEDULED


async def test_a_send_whose_message_is_refused_leaves_a_record_that_expires(
    app: aioq.App, sync_redis: redis.Redis
) -> None:
    """Records of jobs sent to run now have no TTL while their message waits; when
    the XADD is refused after the record was written (here: the stream key holds a
    string), the record is given its TTL, so it cannot outlive a message never sent."""

    @app.task(result_ttl=60.0)
    async def refused() -> None: ...

    sync_redis.set(app.keys.stream("blocked"), "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await refused.with_options(queue="blocked").kiq()
    records = list(sync_redis.scan_iter(match=app.keys.job("*")))
    assert len(records) == 1
    # result_ttl (60 s), less the time the test took since (seconds on a loaded host)
    assert 50_000 < sync_redis.pttl(records[0]) <= 60_000
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await refused.with_options(queue="blocked").kiq_many([(), ()])
    records = list(sync_redis.scan_iter(match=app.keys.job("*")))
    assert len(records) == 3
    assert all(50_000 < sync_redis.pttl(key) <= 60_000 for key in records)
