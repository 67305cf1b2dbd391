"""A live worker never loses its leases and never exits on an outage (issue 10,
items 11, 12, 16, 17, 18), with real ``aioq worker`` processes.

Executions are counted in an oracle Redis no fault touches (``chaosapp``).
``make chaos`` runs the full sizes; ``make test`` a bounded version.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

import aioq
from tests.chaos import chaosapp
from tests.chaos.harness import ROOT, Fleet, RedisServer, scale, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

TASKS = (
    chaosapp.work,
    chaosapp.flaky,
    chaosapp.step,
    chaosapp.total,
    chaosapp.limited,
    chaosapp.crunch,
)


@dataclass
class Rig:
    broker: RedisServer
    oracle: RedisServer
    fleet: Fleet
    app: aioq.App

    def executions(self) -> dict[str, int]:
        client = self.oracle.client()
        try:
            return {k.decode(): int(v) for k, v in client.hgetall("executions").items()}
        finally:
            client.close()

    def states(self, ids: list[str]) -> list[bytes | None]:
        client = self.broker.client()
        try:
            pipe = client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(self.app.keys.job(job_id), "state")
            return list(pipe.execute())
        finally:
            client.close()

    async def wait_final(self, ids: list[str], timeout: float) -> list[bytes | None]:
        deadline = time.monotonic() + timeout
        states: list[bytes | None] = [None] * len(ids)
        while time.monotonic() < deadline:
            try:
                states = self.states(ids)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            if all(s in (b"succeeded", b"failed", b"aborted") for s in states):
                break
            await asyncio.sleep(0.2)
        return states

    def report(self, name: str, ids: list[str], states: list[bytes | None]) -> dict[str, int]:
        runs = self.executions()
        figures = {
            "tasks": len(ids),
            "executions": sum(runs.get(j, 0) for j in ids),
            "duplicates": sum(max(0, runs.get(j, 0) - 1) for j in ids),
            "lost": sum(1 for s in states if s != b"succeeded"),
        }
        print(f"\n[chaos] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
        return figures


@pytest.fixture
def redis_pair() -> Iterator[tuple[RedisServer, RedisServer]]:
    broker, oracle = RedisServer(), RedisServer()
    yield broker, oracle
    broker.stop()
    oracle.stop()


def make_rig(
    servers: tuple[RedisServer, RedisServer], logdir: Path, vt: float = 2.0
) -> tuple[Rig, dict[str, str]]:
    broker, oracle = servers
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": broker.url,
        "AIOQ_ORACLE_URL": oracle.url,
        "AIOQ_TEST_PREFIX": "chaos",
        "AIOQ_TEST_VT": str(vt),
        "PYTHONPATH": str(ROOT),
    }
    app = chaosapp.app
    app.__init__(broker.url, prefix="chaos", visibility_timeout=vt)  # type: ignore[misc]
    for task in TASKS:
        app.registry.add(task.definition)
    return Rig(broker, oracle, Fleet(env=env, logdir=logdir), app), env


@pytest.fixture
async def rig(redis_pair: tuple[RedisServer, RedisServer], tmp_path: Path) -> AsyncIterator[Rig]:
    made, _ = make_rig(redis_pair, tmp_path)
    yield made
    made.fleet.stop()
    await made.app.aclose()


def renewal_gaps(logs: str) -> list[float]:
    return [float(g) for g in re.findall(r"worst lease renewal gap ([0-9.]+)s", logs)]


async def test_cpu_bound_sync_tasks_do_not_cost_a_live_worker_its_leases(
    redis_pair: tuple[RedisServer, RedisServer], tmp_path: Path
) -> None:
    """100 CPU-bound sync tasks on two ``-c 100`` workers: the heartbeat keeps
    every lease, so no live worker's job runs twice; both workers stay up. The
    worst renewal gap each worker saw is printed (from its log)."""
    rig, _ = make_rig(redis_pair, tmp_path, vt=2.0)
    try:
        rig.fleet.concurrency = 100
        first = rig.fleet.spawn()
        wait_until(lambda: "registered" in rig.fleet.logs(), 15, "the first worker")
        jobs = await chaosapp.crunch.kiq_many([(scale(150, 1000),) for _ in range(100)])
        ids = [j.id for j in jobs]
        wait_until(lambda: len(rig.executions()) >= 4, 30, "the first tasks to start")
        second = rig.fleet.spawn()  # would steal any lease the first one let lapse
        states = await rig.wait_final(ids, timeout=scale(240, 600))
        alive = first.poll() is None and second.poll() is None
        rig.fleet.stop()
        figures = rig.report("100 CPU-bound sync tasks on two workers", ids, states)
        gaps = renewal_gaps(rig.fleet.logs())
        print(f"[chaos] worst lease renewal gap per worker: {gaps} s (visibility timeout 2 s)")
        assert alive, "a worker died:\n" + rig.fleet.logs()[-3000:]
        assert figures["lost"] == 0
        assert figures["duplicates"] == 0, rig.fleet.logs()[-3000:]
        assert len(gaps) == 2
    finally:
        rig.fleet.stop()
        await rig.app.aclose()


async def test_a_single_worker_never_reports_a_false_takeover(rig: Rig) -> None:
    """One worker, many short jobs: the heartbeat keeps renewing entries the
    completer has just acked; that is not a takeover and must not be logged as one."""
    n = scale(3000, 5000)
    rig.fleet.concurrency = 100
    worker = rig.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(rig_ms,) for rig_ms in [0, 1, 2, 5] * (n // 4)])
    ids = [j.id for j in jobs]
    states = await rig.wait_final(ids, timeout=180)
    rig.fleet.stop()
    figures = rig.report("single worker, short jobs", ids, states)
    logs = rig.fleet.logs()
    false_alarms = logs.count("lost the lease")
    print(f"[chaos] 'lost the lease' warnings: {false_alarms}")
    assert worker.returncode == 0
    assert figures["lost"] == 0 and figures["duplicates"] == 0
    assert false_alarms == 0
    assert "taken over" not in logs


BUSY_SCRIPT = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat
  t = redis.call('TIME')
until t[1] * 1000000 + t[2] - start > tonumber(ARGV[1]) * 1000
return 1
"""


def keep_busy(client: redis.Redis, ms: int) -> None:
    """Run the busy script once (a worker's own script may be running when we send it:
    on a loaded machine one can pass the 100 ms BUSY threshold)."""
    while True:
        try:
            client.eval(BUSY_SCRIPT, 0, ms)
            return
        except redis.ResponseError as exc:
            if "BUSY" not in str(exc):
                raise
            time.sleep(0.01)


async def test_busy_redis_keeps_workers_alive_and_loses_nothing(rig: Rig) -> None:
    """Another client's script keeps Redis BUSY longer than the visibility timeout
    while two workers run jobs: both stay up, nothing is lost, nothing runs twice
    (after an outage a worker waits for the others to renew before recovering)."""
    rig.fleet.concurrency = 8
    for _ in range(2):
        rig.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(20,)] * scale(600, 3000))
    ids = [j.id for j in jobs]
    wait_until(lambda: len(rig.executions()) >= 30, 30, "the first tasks")
    # A socket timeout longer than the script: redis-py's default (5 s) would resend it.
    admin = redis.Redis(port=rig.broker.port, socket_timeout=60)
    admin.config_set("busy-reply-threshold", 100)
    busy = threading.Thread(target=keep_busy, args=(admin, scale(3000, 6000)), daemon=True)
    busy.start()
    await asyncio.to_thread(busy.join, 30)
    admin.close()
    states = await rig.wait_final(ids, timeout=180)
    alive = all(p.poll() is None for p in rig.fleet.procs)
    figures = rig.report(f"BUSY for {scale(3, 6)} s under load", ids, states)
    logs = rig.fleet.logs()
    assert alive, "a worker died:\n" + logs[-3000:]
    assert figures["lost"] == 0
    assert figures["duplicates"] == 0, logs[-3000:]
    assert "BUSY" in logs
    assert "Traceback" not in logs


async def test_dead_consumers_are_removed(rig: Rig) -> None:
    """Workers SIGKILLed mid-run leave their consumers in the group; once their
    messages are recovered and they stay idle past the bound, the survivors' sweep
    removes them. Live workers keep theirs and nothing is lost."""
    rig.fleet.concurrency = 4

    def spawn() -> subprocess.Popen[bytes]:
        with open(rig.fleet.logdir / f"worker{rig.fleet.started}.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.chaos.shortsweep",
                    "worker",
                    "tests.chaos.chaosapp:app",
                    "-c",
                    "4",
                    "--name",
                    f"w{rig.fleet.started}",
                ],
                env=rig.fleet.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        rig.fleet.started += 1
        rig.fleet.procs.append(proc)
        return proc

    procs = [spawn() for _ in range(4)]
    jobs = await chaosapp.work.kiq_many([(300,)] * 80)
    ids = [j.id for j in jobs]
    wait_until(lambda: len(rig.executions()) >= 12, 30, "the first tasks")
    for victim in procs[:2]:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    states = await rig.wait_final(ids, timeout=120)
    figures = rig.report("consumer sweep after 2 kills", ids, states)
    client = rig.broker.client()
    stream = rig.app.keys.stream("default")

    def consumers() -> set[str]:
        return {c["name"].decode() for c in client.xinfo_consumers(stream, "workers")}

    try:
        wait_until(lambda: not {"w0", "w1"} & consumers(), 30, "dead consumers to go")
        # Live workers are unaffected: (a live consumer that has held nothing for the
        # bound may be removed too; its next message brings it back) they run new work.
        more = await chaosapp.work.kiq_many([(50,)] * 40)
        assert [await j.result(timeout=30) for j in more] == [50] * 40
        left = consumers()
    finally:
        client.close()
    print(f"[chaos] consumers left: {sorted(left)}")
    assert not {"w0", "w1"} & left
    assert figures["lost"] == 0
    assert all(p.poll() is None for p in procs[2:])
    logs = rig.fleet.logs()
    assert "removed" in logs and "idle consumer(s)" in logs


def test_an_evicting_redis_is_reported_and_refused_with_strict(
    redis_pair: tuple[RedisServer, RedisServer], tmp_path: Path
) -> None:
    broker, _ = redis_pair
    admin = broker.client()
    admin.config_set("maxmemory-policy", "volatile-lru")
    admin.close()
    _, env = make_rig(redis_pair, tmp_path)
    argv = [sys.executable, "-m", "aioq", "worker", "tests.chaos.chaosapp:app"]
    strict = subprocess.run(
        [*argv, "--strict"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    print(f"\n[chaos] --strict on volatile-lru: exit {strict.returncode}: {strict.stderr.strip()}")
    assert strict.returncode == 1
    assert "maxmemory-policy is volatile-lru" in strict.stderr
    assert "noeviction" in strict.stderr
    # Under a supervisor (-w 2) the refusal ends the whole command, not a restart loop.
    supervised = subprocess.run(
        [*argv, "--strict", "-w", "2"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert supervised.returncode == 1
    assert "failed to start twice" in supervised.stderr
    lax = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert lax.stdout is not None
        seen = ""
        deadline = time.monotonic() + 20
        while "registered" not in seen and time.monotonic() < deadline:
            seen += lax.stdout.readline()
        assert "maxmemory-policy is volatile-lru" in seen
        assert lax.poll() is None
    finally:
        lax.send_signal(signal.SIGTERM)
        try:
            lax.communicate(timeout=60)  # seconds when idle; a loaded host may take longer
        finally:
            if lax.poll() is None:  # never leave it running (or its pipe open)
                lax.kill()
                lax.communicate()
