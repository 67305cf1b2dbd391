"""Partitioned queues against a real Redis: ``app.queue("hot", partitions=N)``
spreads one logical queue over N physical queues, and every feature keeps its
meaning (docs/guide.md, "Partitioned queues")."""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path

import pytest
import redis

import aioq
from aioq import chain, chord, group
from aioq._core.partitions import partition_index
from tests.conftest import WorkerRunner, both_record_modes, on_cluster_too
from tests.conftest import run_cli as _cli

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
N = 4
HOT = [f"hot#{i}" for i in range(N)]


def ready(sync_redis: redis.Redis, app: aioq.App, queue: str, level: int = 0) -> int:
    return int(sync_redis.xlen(app.keys.stream(queue, level)))


@both_record_modes
async def test_calls_spread_round_robin_and_a_worker_for_hot_reads_every_partition(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app.queue("hot", partitions=N)
    seen: list[str] = []

    @app.task(queue="hot")
    async def work(ctx: aioq.Context, n: int) -> int:
        seen.append(ctx.queue)
        return n

    jobs = [await work.kiq(i) for i in range(4 * N)]
    jobs += await work.kiq_many([(i,) for i in range(2 * N)])
    assert [ready(sync_redis, app, q) for q in HOT] == [6] * N
    assert ready(sync_redis, app, "hot") == 0  # the logical name has no stream
    worker = await workers.start(app)
    assert worker.queues == ["default", *HOT]
    assert [await j.result(timeout=10) for j in jobs] == [*range(4 * N), *range(2 * N)]
    assert collections.Counter(seen) == {q: 6 for q in HOT}
    # the record names the partition the message was in
    infos = [await j.info() for j in jobs[:N]]
    assert [i.queue for i in infos] == HOT


@on_cluster_too
async def test_a_partitioned_queue_on_one_node_and_on_the_cluster(
    app: aioq.App, workers: WorkerRunner, broker_redis: redis.Redis
) -> None:
    """On a cluster each partition is its own slot (so, with enough partitions, its
    own shard): sent round-robin, read and run from every one of them."""
    app.queue("hot", partitions=N)

    @app.task(queue="hot")
    async def work(ctx: aioq.Context, n: int) -> list[object]:
        return [ctx.queue, n]

    jobs = await work.kiq_many([(i,) for i in range(4 * N)])
    assert [int(broker_redis.xlen(app.keys.stream(q, 0))) for q in HOT] == [4] * N
    await workers.start(app)
    results = [await j.result(timeout=15) for j in jobs]
    assert sorted(n for _, n in results) == list(range(4 * N))
    assert collections.Counter(q for q, _ in results) == {q: 4 for q in HOT}
    (hot,) = (await app.status(["hot"])).queues
    assert hot.name == "hot" and [p.name for p in hot.partitions] == HOT


async def test_the_partitions_are_read_fairly(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app.queue("hot", partitions=N)
    order: list[str] = []

    @app.task(queue="hot")
    async def work(ctx: aioq.Context) -> None:
        order.append(ctx.queue)

    # a backlog in every partition before any worker reads: the first reads take
    # from each in turn, not one partition's backlog first
    for q in HOT:
        await work.with_options(queue=q).kiq_many([()] * 20)
    await workers.start(app, queues=["hot"], concurrency=1)
    while len(order) < 4 * 20:
        await asyncio.sleep(0.02)
    for start in range(0, 80, 8):  # every window of 8 starts takes from each partition
        assert set(order[start : start + 8]) == set(HOT), order


async def test_a_partition_key_keeps_a_key_in_one_partition_in_order(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app.queue("hot", partitions=N)
    runs: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)

    @app.task(queue="hot")
    async def event(ctx: aioq.Context, user: str, n: int) -> None:
        runs[user].append((ctx.queue, n))

    users = ["ann", "bob", "cid", "dee", "eve"]
    for n in range(10):
        for user in users:
            await event.with_options(partition_key=user).kiq(user, n)
    await app.send(event.name, ["ann", 10], partition_key="ann")
    expected = {u: f"hot#{partition_index(u, N)}" for u in users}
    counts = collections.Counter(expected.values())
    assert [ready(sync_redis, app, q) for q in HOT] == [
        counts[q] * 10 + (q == expected["ann"]) for q in HOT
    ]
    await workers.start(app, concurrency=1)
    while sum(map(len, runs.values())) < 51:
        await asyncio.sleep(0.02)
    for user in users:  # one partition each, in the order sent
        assert {q for q, _ in runs[user]} == {expected[user]}
        assert [n for _, n in runs[user]] == list(range(11 if user == "ann" else 10))


async def test_unique_jobs_stay_unique_across_partitions_and_senders(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis, redis_url: str
) -> None:
    app.queue("hot", partitions=N)
    other = aioq.App(redis_url, prefix=app.prefix)  # a second sender, its own turn counter
    other.queue("hot", partitions=N)
    runs: list[int] = []
    gate = asyncio.Event()

    @app.task(queue="hot", unique_for=30.0)
    async def refresh(user: int) -> int:
        runs.append(user)
        await gate.wait()
        return user

    try:
        sends = [refresh.kiq(1) for _ in range(20)]
        sends += [other.send(refresh.name, [1], queue="hot", unique_for=30.0) for _ in range(20)]
        jobs = await asyncio.gather(*sends)
        assert len({j.id for j in jobs}) == 1  # round-robin would have made N of them
        assert sum(ready(sync_redis, app, q) for q in HOT) == 1
        named = await asyncio.gather(
            *(refresh.with_options(job_id="nightly").kiq(i) for i in range(10)),
            *(other.send(refresh.name, [i], queue="hot", job_id="nightly") for i in range(10)),
        )
        assert {j.id for j in named} == {"nightly"}
        assert sum(ready(sync_redis, app, q) for q in HOT) == 2
        await workers.start(app)
        while len(runs) < 2:
            await asyncio.sleep(0.02)
        assert (await refresh.kiq(1)).id == jobs[0].id  # running: still the same job
        gate.set()
        assert await jobs[0].result(timeout=10) == 1
        later = await other.send(refresh.name, [1], queue="hot", unique_for=30.0)
        assert later.id != jobs[0].id  # its lock was released in its partition
        assert await later.result(timeout=10) == 1
        assert sorted(runs) == [0, 1, 1]
    finally:
        gate.set()
        await other.aclose()


async def test_priorities_delays_and_retries_keep_their_meaning(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app.queue("hot", partitions=N)
    order: list[int] = []
    attempts: dict[str, list[str]] = collections.defaultdict(list)
    loop = asyncio.get_running_loop()
    ran_at: dict[int, float] = {}

    @app.task(queue="hot")
    async def job(p: int) -> None:
        order.append(p)
        ran_at[p] = loop.time()

    @app.task(queue="hot", retries=2, retry_backoff=0.05)
    async def flaky(ctx: aioq.Context, key: str) -> str:
        attempts[key].append(ctx.queue)
        if len(attempts[key]) < 3:
            raise ValueError("not yet")
        return key

    for _ in range(3):
        await job.kiq_many([(0,)] * N)
    await job.with_options(priority=9).kiq_many([(9,)] * N)  # sent last, one per partition
    assert sum(ready(sync_redis, app, q, 9) for q in HOT) == N
    sent = loop.time()
    delayed = await job.with_options(delay=0.5).kiq(5)
    assert await delayed.state() == aioq.JobState.SCHEDULED
    retried = [await flaky.kiq(k) for k in ("a", "b", "c", "d")]
    await workers.start(app, concurrency=1)
    assert [await r.result(timeout=10) for r in retried] == ["a", "b", "c", "d"]
    for key, queues in attempts.items():  # a retry goes back to its own partition
        assert len(queues) == 3 and len(set(queues)) == 1, (key, queues)
    assert len({q[0] for q in attempts.values()}) == N  # and the four were spread
    await delayed.result(timeout=10)
    assert order[:N] == [9] * N  # the urgent ones first, whatever their partition
    assert sorted(order[N:]) == [0] * 3 * N + [5]
    assert ran_at[5] - sent >= 0.5  # not before its delay (by Redis' clock)


async def test_max_running_and_rate_limits_span_partitions(
    app: aioq.App, workers: WorkerRunner
) -> None:
    app.queue("hot", partitions=N)
    now_running, most = 0, 0

    @app.task(queue="hot", max_running=1)
    async def single() -> None:
        nonlocal now_running, most
        now_running += 1
        most = max(most, now_running)
        await asyncio.sleep(0.02)
        now_running -= 1

    starts: list[float] = []

    @app.task(queue="hot", rate_limit="20/s")
    async def limited() -> None:
        starts.append(asyncio.get_running_loop().time())

    jobs = await single.kiq_many([()] * 8)
    paced = await limited.kiq_many([()] * 6)
    await workers.start(app, concurrency=16)
    for j in (*jobs, *paced):
        await j.result(timeout=20)
    assert most == 1  # one task-level slot set, whatever the partition
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.04  # 20/s is one start per 51 ms, across partitions


async def test_abort_a_queued_job_of_a_partition(app: aioq.App, workers: WorkerRunner) -> None:
    app.queue("hot", partitions=N)
    runs: list[int] = []

    @app.task(queue="hot")
    async def work(n: int) -> None:
        runs.append(n)

    jobs = [await work.kiq(n) for n in range(N)]
    assert await jobs[2].abort() is True
    await workers.start(app)
    for n, j in enumerate(jobs):
        if n == 2:
            with pytest.raises(aioq.JobAborted):
                await j.result(timeout=5)
        else:
            await j.result(timeout=5)
    assert sorted(runs) == [0, 1, 3]


@both_record_modes
async def test_workflows_run_across_partitions(app: aioq.App, workers: WorkerRunner) -> None:
    app.queue("hot", partitions=N)

    @app.task(queue="hot")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(queue="hot")
    async def tsum(values: list[int]) -> int:
        return sum(values)

    await workers.start(app)
    job = await chain(add.s(1, 1), add.s(10), add.s(100)).kiq()
    assert await job.result(timeout=10) == 112
    total = await chord([add.s(i, i) for i in range(8)], tsum.s()).kiq()
    assert await total.result(timeout=10) == 56
    nested = await chain(add.s(1, 1), group([add.s(10), add.s(100)]), tsum.s()).kiq()
    assert await nested.result(timeout=10) == 114
    # every workflow job sits in the partition of its id (its record says which)
    info = await total.info()
    assert info.queue == f"hot#{partition_index(total.id, N)}"


async def test_status_purge_and_dead_letters_cover_every_partition(
    app: aioq.App, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app.queue("hot", partitions=N)

    @app.task(queue="hot")
    async def work(n: int) -> None: ...

    jobs = await work.kiq_many([(n,) for n in range(10)])
    await work.with_options(delay=60).kiq(99)
    status = await app.status()
    row = next(q for q in status.queues if q.name == "hot")
    assert (row.ready, row.scheduled) == (10, 1)
    assert [p.name for p in row.partitions] == HOT
    assert [p.ready for p in row.partitions] == [3, 3, 2, 2]
    assert sum(p.scheduled for p in row.partitions) == 1
    alone = (await app.status(["hot#1"])).queues
    assert [(q.name, q.ready, q.partitions) for q in alone] == [("hot#1", 3, [])]
    queued = await app.jobs("queued", queue="hot")
    assert sorted(j.id for j in queued) == sorted(j.id for j in jobs)
    assert {j.queue for j in queued} == set(HOT)

    assert await app.purge("hot") == 10
    assert sum(ready(sync_redis, app, q) for q in HOT) == 0
    assert {await j.state() for j in jobs} == {aioq.JobState.ABORTED}

    # an unknown task's messages are dead-lettered in their partitions
    for n in range(N):
        await app.send("nobody.knows", [n], queue="hot")
    await workers.start(app)
    while len(await app.dead_letters("hot")) < N:
        await asyncio.sleep(0.05)
    letters = await app.dead_letters("hot")
    assert sorted(d.queue for d in letters) == HOT
    row = next(q for q in (await app.status(["hot"])).queues)
    assert row.dead == N and [p.dead for p in row.partitions] == [1] * N
    assert await app.purge_dead("hot") == N
    assert await app.dead_letters("hot") == []


async def test_a_killed_workers_jobs_are_recovered_in_every_partition(
    app: aioq.App, workers: WorkerRunner
) -> None:
    app.queue("hot", partitions=N)
    started: list[str] = []
    release = asyncio.Event()

    @app.task(queue="hot")
    async def slow(ctx: aioq.Context, n: int) -> int:
        started.append(ctx.worker_id)
        await release.wait()
        return n

    jobs = await slow.kiq_many([(n,) for n in range(2 * N)])
    first = await workers.start(app, name="first", concurrency=2 * N)
    while len(started) < 2 * N:
        await asyncio.sleep(0.02)
    first.kill()  # its messages stay pending in each partition's group
    await workers.stop(first)
    release.set()
    await workers.start(app, name="second")
    assert [await j.result(timeout=15) for j in jobs] == list(range(2 * N))
    assert collections.Counter(started) == {"first": 2 * N, "second": 2 * N}


async def test_cli_status_purge_and_a_burst_worker_cover_every_partition(
    redis_url: str, prefix: str
) -> None:
    spec = "tests.partsapp:app"
    app = aioq.App(redis_url, prefix=prefix)
    app.queue("hot", partitions=4)
    try:
        for n in range(6):
            await app.send("tests.partsapp.add", [n, n], queue="hot")
        out = await asyncio.to_thread(_cli, redis_url, prefix, "status", spec, "--json")
        assert out.returncode == 0, out.stderr
        hot = {q["name"]: q for q in json.loads(out.stdout)["queues"]}["hot"]
        assert hot["ready"] == 6
        assert [(p["name"], p["ready"]) for p in hot["partitions"]] == [
            ("hot#0", 2),
            ("hot#1", 2),
            ("hot#2", 1),
            ("hot#3", 1),
        ]
        table = await asyncio.to_thread(_cli, redis_url, prefix, "status", spec, "-Q", "hot")
        rows = [line.split()[:2] for line in table.stdout.splitlines()[1:6]]
        assert rows == [
            ["hot", "6"],
            ["hot#0", "2"],
            ["hot#1", "2"],
            ["hot#2", "1"],
            ["hot#3", "1"],
        ]
        out = await asyncio.to_thread(_cli, redis_url, prefix, "purge", spec, "-Q", "hot", "--yes")
        assert out.returncode == 0 and "purged 6 ready message(s)" in out.stdout, out

        jobs = [await app.send("tests.partsapp.add", [n, 1], queue="hot") for n in range(8)]
        out = await asyncio.to_thread(
            _cli, redis_url, prefix, "worker", spec, "-Q", "hot", "--burst"
        )
        assert out.returncode == 0, out.stderr
        assert [await j.result(timeout=5) for j in jobs] == [n + 1 for n in range(8)]
    finally:
        await app.aclose()


async def test_metrics_report_the_queue_and_each_partition(
    app: aioq.App, workers: WorkerRunner
) -> None:
    pytest.importorskip("prometheus_client")
    from tests.integration.probes import free_port, get
    from tests.integration.test_metrics import parse, sample

    app.queue("hot", partitions=N)

    @app.task(queue="hot")
    async def work() -> None: ...

    port = free_port()
    # a worker pinned to one partition: it reads hot#0 alone, its gauges show all of hot
    worker = await workers.start(app, queues=["hot#0"], metrics_port=port)
    assert worker.queues == ["hot#0"]
    jobs = await work.kiq_many([()] * 6)
    await jobs[0].result(timeout=5)
    await jobs[4].result(timeout=5)
    status, body = await get(port, "/metrics")
    assert status == 200
    m = parse(body)
    assert sample(m, "aioq_queue_ready", queue="hot") == 4
    assert [sample(m, "aioq_queue_partition_ready", queue="hot", partition=q) for q in HOT] == [
        0,
        2,
        1,
        1,
    ]
    assert not [k for k in m if k[0] == "aioq_queue_ready" and "#" in dict(k[1])["queue"]]
