"""``aioq worker -w 2`` and ``aioq scheduler`` as real processes on the session's
Redis Cluster (``redis_cluster_url``: 3 primaries + 3 replicas, see
scripts/with_cluster.py), each test under its own prefix.

- ``-w 2``: a supervisor and two child processes drain jobs, both children take
  work, each job's body runs once, SIGTERM ends all three with exit 0.
- Schedules: an every-0.5 s schedule fired by two concurrent ``aioq scheduler``
  processes (or by both children of ``aioq worker --scheduler -w 2``) is sent once
  per tick (job id ``half@<tick>``) and each tick's job runs exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

import aioq
from aioq._transport.keys import Keyspace
from tests import procapp, tickapp
from tests.integration.test_process import children_of
from tests.integration.test_scheduling import Proc

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("broker_url", ["cluster"], indirect=True),
]


@pytest.fixture
def spawn(broker_url: str, prefix: str, tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``python -m aioq ARGS`` on the cluster with the test's prefix; every process
    still running at the end is killed."""
    procs: list[Proc] = []
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": broker_url,
        "AIOQ_TEST_PREFIX": prefix,
        "AIOQ_TEST_VT": "2.0",
        "PYTHONPATH": str(ROOT),
    }

    def start(*args: str) -> Proc:
        proc = Proc(list(args), env, tmp_path / f"proc{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


@pytest.fixture
async def client(broker_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    # Share the task definitions of procapp, but talk to this test's cluster prefix.
    procapp.app.__init__(broker_url, prefix=prefix, visibility_timeout=2.0)  # type: ignore[misc]
    for definition in (procapp.add, procapp.sleepy, procapp.mul):
        procapp.app.registry.add(definition.definition)
    yield procapp.app
    await procapp.app.aclose()


async def test_two_worker_processes_drain_the_queue_on_a_cluster(
    spawn: Callable[..., Proc], client: aioq.App, broker_redis: redis.Redis
) -> None:
    sup = spawn("worker", "tests.procapp:app", "-w", "2", "-c", "4")
    deadline = time.monotonic() + 40
    while sup.output().count("task(s) registered") < 2:
        assert sup.popen.poll() is None, sup.output()
        assert time.monotonic() < deadline, sup.output()
        await asyncio.sleep(0.05)
    kids = children_of(sup.popen.pid)
    assert len(kids) == 2

    n = 60
    jobs = await procapp.sleepy.kiq_many([(0.2,)] * n)
    # each child takes at most its 4 free slots at a time: 60 jobs of 0.2 s (3 s of
    # work for one child) do not all go to one of two children that both wait
    ran_on = await aioq.gather(*jobs, timeout=60)
    assert len(set(ran_on)) == 2, ran_on
    assert procapp.runs_per_job(broker_redis, client.prefix) == {j.id: 1 for j in jobs}
    assert all([await j.state() == aioq.JobState.SUCCEEDED for j in jobs])

    sup.popen.send_signal(signal.SIGTERM)
    assert sup.popen.wait(20) == 0, sup.output()
    assert not children_of(sup.popen.pid)
    assert "Traceback" not in sup.output()


def _ticks(client: redis.Redis, keys: Keyspace) -> dict[int, dict[bytes, bytes]]:
    """The record of every ``half`` job, by its tick (job id ``half@<tick>``)."""
    pattern = f"{keys.job('half@')}*"
    out: dict[int, dict[bytes, bytes]] = {}
    for key in client.scan_iter(match=pattern, count=1000):
        tick = int(key.decode().rpartition("@")[2])
        out[tick] = client.hgetall(key)  # type: ignore[assignment]
    return out


@pytest.mark.parametrize("mode", ["two-schedulers", "worker-scheduler-w2"])
async def test_schedule_ticks_once_across_processes_on_a_cluster(
    spawn: Callable[..., Proc], prefix: str, broker_redis: redis.Redis, mode: str
) -> None:
    if mode == "two-schedulers":
        procs = [
            spawn("worker", "tests.tickapp:app", "-c", "4"),
            spawn("scheduler", "tests.tickapp:app"),
            spawn("scheduler", "tests.tickapp:app"),
        ]
        for proc in procs[1:]:
            await asyncio.to_thread(proc.wait_for_output, "scheduler started", 40)
    else:
        procs = [spawn("worker", "tests.tickapp:app", "--scheduler", "-w", "2")]
        deadline = time.monotonic() + 40
        while procs[0].output().count("scheduler started") < 2:
            assert procs[0].popen.poll() is None, procs[0].output()
            assert time.monotonic() < deadline, procs[0].output()
            await asyncio.sleep(0.05)

    deadline = time.monotonic() + 40
    while len(tickapp.runs_per_job(broker_redis, prefix)) < 8:
        logs = "\n".join(p.output()[-2000:] for p in procs)
        assert time.monotonic() < deadline, f"fewer than 8 ticks ran:\n{logs}"
        await asyncio.sleep(0.1)
    # schedulers first, then the worker (which finishes what it runs)
    for proc in reversed(procs):
        assert proc.terminate() == 0, proc.output()
        assert "Traceback" not in proc.output()

    records = _ticks(broker_redis, Keyspace(prefix))
    ticks = sorted(records)
    assert len(ticks) >= 8
    gaps = [(a, b) for a, b in itertools.pairwise(ticks) if b - a != 500]
    assert not gaps, f"ticks missing or off the 500 ms grid between {gaps}"
    runs = tickapp.runs_per_job(broker_redis, prefix)
    assert max(runs.values()) == 1, runs  # no tick's job ran twice
    for tick, record in records.items():
        # the last ticks may be cut by the stop: sent but not run yet, or running
        assert record.get(b"attempts", b"0") in (b"0", b"1"), (tick, record)
        if record[b"state"] == b"succeeded":
            assert runs[f"half@{tick}"] == 1
    succeeded = [t for t, r in records.items() if r[b"state"] == b"succeeded"]
    assert len(succeeded) >= 8
    assert set(runs) <= {f"half@{t}" for t in ticks}
