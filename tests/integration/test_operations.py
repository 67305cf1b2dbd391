"""Seeing and steering a running system: ``App.status/workers/jobs/purge``, the
``aioq status|workers|jobs|job|purge`` commands, ``--version``, and the worker's
per-task log lines (text and ``--log-format json``). All against real workers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO

import pytest

import aioq
from tests import opsapp
from tests.conftest import WorkerRunner, on_cluster_too
from tests.conftest import run_cli as cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def ops(broker_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    """``tests.opsapp:app`` on this test's prefix (the CLI loads the same app)."""
    opsapp.app.__init__(broker_url, prefix=prefix, visibility_timeout=2.0)  # type: ignore[misc]
    for task in (
        opsapp.add,
        opsapp.chatty,
        opsapp.chatty_sync,
        opsapp.nap,
        opsapp.boom,
        opsapp.flaky,
        opsapp.later,
    ):
        opsapp.app.registry.add(task.definition)
    yield opsapp.app
    await opsapp.app.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def busy_worker(app: aioq.App, workers: WorkerRunner) -> tuple[aioq.Worker, aioq.Job[None]]:
    """A worker with concurrency 1 held by a long ``nap``; returns it and that job."""
    worker = await workers.start(app, concurrency=1)
    running = await opsapp.nap.kiq(600)  # outlasts the test, however slow the machine

    async def started() -> bool:
        return await running.state() is aioq.JobState.RUNNING

    await eventually(started)
    return worker, running


# -- the read model ---------------------------------------------------------------


@on_cluster_too
async def test_status_counts_every_kind_of_message_and_lists_the_worker(
    ops: aioq.App, workers: WorkerRunner
) -> None:
    worker, _ = await busy_worker(ops, workers)
    queued = [await opsapp.add.kiq(i, i) for i in range(3)]
    await opsapp.add.with_options(priority=5).kiq(1, 1)
    await opsapp.add.with_options(delay=60).kiq(2, 2)
    await ops.send("no.such.task")  # dead-lettered by the worker? no: it never reads it
    await asyncio.sleep(0.3)

    async def registered() -> bool:
        seen = await ops.workers()
        return bool(seen) and seen[0].running == 1

    await eventually(registered)
    status = await ops.status()
    q = {row.name: row for row in status.queues}["default"]
    assert (q.ready, q.running, q.scheduled, q.retrying) == (5, 1, 1, 0)
    assert q.consumers == 1 and q.oldest_ready_age_s is not None and q.oldest_ready_age_s >= 0.2
    levels = {lv.priority: lv for lv in q.levels}
    assert levels[5].ready == 1 and levels[0].ready == 4 and levels[0].running == 1
    assert len(status.workers) == 1
    w = status.workers[0]
    assert w.id == worker.id and w.pid == os.getpid() and w.concurrency == 1
    assert "default" in w.queues and w.version == aioq.__version__
    assert 0 <= w.last_seen_s < 5 and w.started_at is not None
    assert len(queued) == 3


async def test_worker_counters_and_clean_exit(ops: aioq.App, workers: WorkerRunner) -> None:
    worker = await workers.start(ops, concurrency=4)
    await opsapp.add.kiq(1, 2)
    jobs = [await opsapp.add.kiq(i, 1) for i in range(4)]
    failing = await opsapp.boom.kiq("nope")
    await aioq.gather(*jobs, timeout=10)
    with pytest.raises(aioq.TaskFailed):
        await failing.result(timeout=10)

    async def counted() -> bool:
        seen = await ops.workers()
        return bool(seen) and seen[0].processed == 6 and seen[0].failed == 1

    await eventually(counted)
    await workers.stop(worker)
    assert await ops.workers() == []  # removed on a clean exit, not left to expire
    assert (await ops.status()).workers == []


async def test_jobs_lists_each_state(ops: aioq.App, workers: WorkerRunner) -> None:
    _, running = await busy_worker(ops, workers)
    queued = await opsapp.add.kiq(40, 2)
    scheduled = await opsapp.add.with_options(delay=60).kiq(1, 2)
    # a retry waiting for its backoff, and a dead letter, made by another worker
    helper = await workers.start(ops, queues=["other"])
    retrying = await opsapp.later.with_options(queue="other").kiq("x")
    dead = await ops.send("no.such.task", [7], queue="other")
    await eventually(lambda: _state_is(retrying, aioq.JobState.RETRYING))
    await eventually(lambda: _state_is(dead, aioq.JobState.FAILED))
    await workers.stop(helper)

    (r,) = await ops.jobs("running")
    assert (r.id, r.state, r.task, r.args, r.attempts) == (
        running.id,
        "running",
        opsapp.nap.name,
        "(600)",
        1,
    )
    assert r.worker is not None and r.deliveries == 1 and r.started_at is not None
    (q,) = await ops.jobs("queued", queue="default")
    assert (q.id, q.args, q.attempts) == (queued.id, "(40, 2)", 0)
    (s,) = await ops.jobs("scheduled")
    assert s.id == scheduled.id and s.due_at is not None and s.due_at > s.enqueued_at  # type: ignore[operator]
    (t,) = await ops.jobs("retrying", queue="other")
    assert t.id == retrying.id and t.attempts == 1
    (f,) = await ops.jobs("failed")
    assert f.id == dead.id and f.task == "no.such.task" and "unknown task" in (f.reason or "")
    assert await ops.jobs("queued", queue="other", limit=5) == []
    with pytest.raises(ValueError):
        await ops.jobs("lost")


async def _state_is(job: aioq.Job[object], state: aioq.JobState) -> bool:
    return await job.state() is state


@on_cluster_too
async def test_purge_drops_only_ready_messages(ops: aioq.App, workers: WorkerRunner) -> None:
    worker, running = await busy_worker(ops, workers)
    ready = [await opsapp.add.kiq(i, 0) for i in range(5)]
    urgent = await opsapp.add.with_options(priority=9).kiq(9, 9)
    later = await opsapp.add.with_options(delay=60).kiq(0, 0)
    assert await ops.purge("default") == 6
    status = {q.name: q for q in (await ops.status()).queues}["default"]
    assert (status.ready, status.running, status.scheduled) == (0, 1, 1)
    for job in [*ready, urgent]:
        assert await job.state() is aioq.JobState.ABORTED
        with pytest.raises(aioq.JobAborted):
            await job.result(timeout=1)
    assert await later.state() is aioq.JobState.SCHEDULED
    assert await running.state() is aioq.JobState.RUNNING  # untouched
    assert await ops.purge("default") == 0
    # the worker carries on with what is sent next
    await running.abort()
    assert await (await opsapp.add.kiq(1, 1)).result(timeout=10) == 2

    async def idle() -> bool:
        return worker.running == 0

    await eventually(idle)


# -- the command line -------------------------------------------------------------


@on_cluster_too
async def test_cli_status_workers_jobs_job(
    ops: aioq.App, workers: WorkerRunner, broker_url: str, prefix: str
) -> None:
    spec = "tests.opsapp:app"
    none = await asyncio.to_thread(cli, broker_url, prefix, "workers", spec)
    assert none.returncode == 1 and "no live worker" in none.stdout

    worker, running = await busy_worker(ops, workers)
    queued = await opsapp.add.kiq(3, 4)
    failed = await ops.send("no.such.task", queue="other")
    await workers.start(ops, queues=["other"])
    await eventually(lambda: _state_is(failed, aioq.JobState.FAILED))

    async def seen() -> bool:
        return len(await ops.workers()) == 2

    await eventually(seen)
    out = await asyncio.to_thread(cli, broker_url, prefix, "workers", spec)
    assert out.returncode == 0 and worker.id in out.stdout and "1/1" in out.stdout
    out = await asyncio.to_thread(cli, broker_url, prefix, "status", spec, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    default = {q["name"]: q for q in data["queues"]}["default"]
    assert (default["ready"], default["running"]) == (1, 1)
    assert {q["name"]: q for q in data["queues"]}["other"]["dead"] == 1
    assert len(data["workers"]) == 2
    out = await asyncio.to_thread(cli, broker_url, prefix, "status", spec)
    assert "QUEUE" in out.stdout and "default" in out.stdout and worker.id in out.stdout

    out = await asyncio.to_thread(
        cli, broker_url, prefix, "jobs", spec, "--state", "queued", "--json"
    )
    assert [j["id"] for j in json.loads(out.stdout)] == [queued.id]
    out = await asyncio.to_thread(cli, broker_url, prefix, "jobs", spec, "--state", "running")
    assert running.id in out.stdout and "(600)" in out.stdout
    out = await asyncio.to_thread(cli, broker_url, prefix, "jobs", spec, "--state", "failed")
    assert failed.id in out.stdout and "unknown task" in out.stdout

    done = await opsapp.boom.with_options(queue="other").kiq("it broke")
    with pytest.raises(aioq.TaskFailed):
        await done.result(timeout=10)
    out = await asyncio.to_thread(cli, broker_url, prefix, "job", spec, running.id)
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    assert out.returncode == 0 and fields["state"] == "running" and fields["attempts"] == "1"
    out = await asyncio.to_thread(cli, broker_url, prefix, "job", spec, done.id)
    assert "ValueError: it broke" in out.stdout and "Traceback" in out.stdout
    out = await asyncio.to_thread(cli, broker_url, prefix, "job", spec, "no-such-id")
    assert out.returncode == 1


async def test_cli_purge_asks_first(
    ops: aioq.App, workers: WorkerRunner, redis_url: str, prefix: str
) -> None:
    spec = "tests.opsapp:app"
    _, running = await busy_worker(ops, workers)
    for i in range(4):
        await opsapp.add.kiq(i, i)
    out = await asyncio.to_thread(
        cli, redis_url, prefix, "purge", spec, "-Q", "default", stdin="n\n"
    )
    assert out.returncode == 1 and "drop 4 ready message(s)" in out.stdout
    assert {q.name: q for q in (await ops.status()).queues}["default"].ready == 4
    out = await asyncio.to_thread(
        cli, redis_url, prefix, "purge", spec, "-Q", "default", stdin="y\n"
    )
    assert out.returncode == 0 and "purged 4 ready message(s)" in out.stdout
    for i in range(2):
        await opsapp.add.kiq(i, i)
    out = await asyncio.to_thread(cli, redis_url, prefix, "purge", spec, "-Q", "default", "--yes")
    assert out.returncode == 0 and "purged 2 ready message(s)" in out.stdout
    assert await running.state() is aioq.JobState.RUNNING


def test_cli_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "aioq", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0 and out.stdout.strip() == f"aioq {aioq.__version__}"


# -- per-task log lines -----------------------------------------------------------


async def test_task_outcome_log_lines(
    ops: aioq.App, workers: WorkerRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioq")
    await workers.start(ops)
    ok = await opsapp.add.kiq(1, 2)
    bad = await opsapp.boom.kiq("kaput")
    flaky = await opsapp.flaky.kiq("again")
    await ok.result(timeout=10)
    for job in (bad, flaky):
        with pytest.raises(aioq.TaskFailed):
            await job.result(timeout=10)
    lines = [r.getMessage() for r in caplog.records if r.name == "aioq.task"]
    assert any(
        line.startswith(f"task {opsapp.add.name}[{ok.id}] succeeded in ") for line in lines
    ), lines
    assert f"task {opsapp.boom.name}[{bad.id}] failed: ValueError: kaput" in lines
    assert any(
        line.startswith(f"task {opsapp.flaky.name}[{flaky.id}] retrying in ") for line in lines
    )
    assert f"task {opsapp.flaky.name}[{flaky.id}] failed: RuntimeError: again" in lines


def _json_worker(
    env: dict[str, str], level: str, path: Path
) -> tuple[subprocess.Popen[bytes], IO[bytes], Path]:
    out = open(path, "wb")  # closed by the test
    args = ["worker", "tests.opsapp:app", "--log-format", "json", "--log-level", level]
    proc = subprocess.Popen(
        [sys.executable, "-m", "aioq", *args, "--name", f"w-{level}"],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    return proc, out, path


@pytest.mark.slow
async def test_worker_json_logs_carry_the_job_and_warning_silences_successes(
    ops: aioq.App, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": redis_url,
        "AIOQ_TEST_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }
    procs = [_json_worker(env, level, tmp_path / f"{level}.log") for level in ("info", "warning")]
    try:

        async def both() -> bool:
            return len(await ops.workers()) == 2

        await eventually(both, 20)
        jobs = [await opsapp.chatty.kiq(i) for i in range(4)]
        jobs += [await opsapp.chatty_sync.kiq(i) for i in range(4)]
        await aioq.gather(*jobs, timeout=15)
    finally:
        for proc, out, _ in procs:
            proc.terminate()
            proc.wait(15)
            out.close()
    info = [json.loads(line) for line in procs[0][2].read_text().splitlines()]
    warning = [json.loads(line) for line in procs[1][2].read_text().splitlines()]
    inside = [r for r in info + warning if r["logger"] == "tests.opsapp"]
    by_id = {j.id: j for j in jobs}
    assert inside, info
    for record in inside:
        job = by_id[record["job_id"]]
        assert record["task"] in (opsapp.chatty.name, opsapp.chatty_sync.name)
        assert record["queue"] == "default" and record["attempt"] == 1
        assert str(job.id) == record["job_id"]
    done = [r for r in info if r["logger"] == "aioq.task"]
    assert done and all("succeeded in" in r["message"] and "job_id" in r for r in done)
    assert not [r for r in warning if r["level"] in ("info", "debug")]


# -- the registry under faults ----------------------------------------------------


def test_a_refused_registry_write_never_fails_the_lease_renewal() -> None:
    """Under OOM (noeviction) Redis refuses HSET but not the renewals' XCLAIM: the
    heartbeat must keep renewing and not report an outage."""
    from aioq._transport.keys import Keyspace
    from aioq._transport.leases import LeaseRenewer, Registration
    from aioq._transport.scripts import SCRIPTS
    from tests.chaos.harness import RedisServer

    server = RedisServer()
    admin = server.client()
    try:
        keys = Keyspace("oom")
        stream = keys.stream("default")
        admin.xgroup_create(stream, "workers", id="0", mkstream=True)
        admin.xadd(stream, {"m": b"x"})
        ((_, entries),) = admin.xreadgroup("workers", "w1", {stream: ">"}, count=1)
        entry_id = entries[0][0]
        admin.script_load(SCRIPTS["renew"].source)
        renewer = LeaseRenewer(server.url, {}, "w1", 2.0, Registration(keys, "w1", 1.0))
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        try:
            found = renewer.renew({stream: [entry_id]}, lambda: {"host": "h", "pid": 1})
        finally:
            admin.config_set("maxmemory", "0")
            renewer.close()
        assert found[stream].taken == [] and found[stream].gone == []
        assert not admin.exists(keys.worker("w1"))  # refused, and that is all
    finally:
        admin.close()
        server.stop()


@pytest.mark.slow
async def test_a_killed_workers_entry_expires_and_is_pruned(
    ops: aioq.App, workers: WorkerRunner, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": redis_url,
        "AIOQ_TEST_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }
    proc, out, _ = _json_worker(env, "warning", tmp_path / "killed.log")
    try:

        async def one() -> bool:
            return len(await ops.workers()) == 1

        await eventually(one, 20)
    finally:
        proc.kill()
        proc.wait(10)
        out.close()
    (entry,) = await ops.workers()
    assert entry.id == "w-warning" and entry.pid == proc.pid

    async def expired() -> bool:  # TTL: 3 beats of 1 s + 1 s
        return await ops.workers() == []

    await eventually(expired, 10)
    # status() pruned the dead id; one left behind is pruned by the next worker's start
    client = ops.broker.redis
    assert b"w-warning" not in await client.smembers(ops.keys.workers())
    await client.sadd(ops.keys.workers(), "w-warning")
    await workers.start(ops)
    assert b"w-warning" not in await client.smembers(ops.keys.workers())
