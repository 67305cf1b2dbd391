"""Fresh client processes racing their first ``result()`` calls, under faults.

Each client process (``tests/burst.py``) sends 100 ``kiq()`` + ``result(timeout=3)``
within its first half second, while worker *processes* serve them and the test
kills every pub/sub connection at random moments and, in every third pair of
clients, restarts Redis (AOF, fsync always) in the middle of the burst. Every
``result()`` call must return its value or raise ``ResultTimeout`` within 3 + 1 s,
no client may hold two pub/sub connections, every job sent must end, and every
worker must stay alive. ``make chaos`` (``AIOQ_CHAOS=full``) runs 40 clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

import aioq
from tests.chaos.harness import ROOT, RedisServer, scale, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

PREFIX = "chaos-burst"
CALLS = 100
TIMEOUT = 3.0
BOUND = 1.0


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    server = RedisServer(aof=True)
    yield server
    server.stop()


def kill_pubsub(server: RedisServer) -> int:
    client = server.client()
    try:
        return int(client.client_kill_filter(_type="pubsub", skipme=True))
    except redis.ConnectionError:  # restarting
        return 0
    finally:
        client.close()


@pytest.fixture
def env(broker: RedisServer) -> dict[str, str]:
    return {
        **os.environ,
        "AIOQ_REDIS_URL": broker.url,
        "AIOQ_TEST_PREFIX": PREFIX,
        "AIOQ_TEST_VT": "2.0",
        "PYTHONPATH": str(ROOT),
    }


@dataclass
class Workers:
    procs: list[subprocess.Popen[bytes]]
    logdir: Path

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.logdir.glob("*.log"))


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Two ``aioq worker tests.burst:app`` processes."""
    procs = []
    for i in range(2):
        with open(tmp_path / f"worker{i}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "aioq", "worker", "tests.burst:app", "-c", "100"],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    yield Workers(procs, tmp_path)
    for proc in procs:
        proc.kill()
        proc.wait(10)


async def test_first_result_bursts_in_fresh_processes_under_faults(
    broker: RedisServer, env: dict[str, str], workers: Workers
) -> None:
    seed = int(os.environ.get("AIOQ_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"\n[chaos] seed={seed}")
    rng = random.Random(seed)
    runs = scale(6, 40)
    reports: list[dict[str, Any]] = []
    kills = restarts = 0
    for pair in range(runs // 2):
        restart = pair % 3 == 1
        clients = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.burst",
                str(CALLS),
                str(TIMEOUT),
                env={**env, "AIOQ_BURST_NAME": f"burst{pair}-{i}"},
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for i in range(2)
        ]
        outputs = asyncio.gather(
            *(asyncio.wait_for(c.communicate(), TIMEOUT + 60) for c in clients)
        )
        if restart:
            await asyncio.sleep(rng.uniform(0.3, 0.9))  # mid-burst
            broker.kill()
            await asyncio.sleep(rng.uniform(0.1, 0.6))
            broker.start()
            restarts += 1
        while not outputs.done():
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            kills += kill_pubsub(broker)
        for client, (out, err) in zip(clients, await outputs, strict=True):
            assert client.returncode == 0, err.decode(errors="replace")
            report = json.loads(out.decode().strip().splitlines()[-1])
            report["restart"] = restart
            reports.append(report)

    # Every job that was sent ends (the workers ride out the restarts).
    app = aioq.App(broker.url, prefix=PREFIX)
    ids = [job for r in reports for job in r["jobs"]]
    admin = broker.client()

    def all_succeeded() -> bool:
        pipe = admin.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(app.keys.job(job_id), "state")
        return all(state == b"succeeded" for state in pipe.execute())

    wait_until(all_succeeded, 60, "every job sent to succeed")
    admin.close()
    alive = workers.alive()

    calls = sum(r["ok"] + r["timeout"] + r["hung"] for r in reports)
    print(
        f"[chaos] result bursts: processes={len(reports)}, results awaited={calls}, "
        f"ok={sum(r['ok'] for r in reports)}, timeouts={sum(r['timeout'] for r in reports)} "
        f"(job then: {sorted(s for r in reports for s in r['timeout_states'])}), "
        f"hung={sum(r['hung'] for r in reports)}, pubsub kills={kills}, restarts={restarts}, "
        f"slowest result()={max(r['slowest'] for r in reports):.2f}s, "
        f"most pub/sub connections in a client={max(r['pubsub_peak'] for r in reports)}"
    )
    assert [r["hung"] for r in reports] == [0] * len(reports)
    for report in reports:
        allowed = {"kiq error: BrokerUnavailable"} if report["restart"] else set()
        assert set(report["errors"]) <= allowed, report["errors"]
        if not report["restart"]:  # killed pub/sub connections alone never cost a result
            assert report["ok"] == CALLS, {k: v for k, v in report.items() if k != "jobs"}
    # A job that had finished when its wait timed out would be a lost wake-up.
    assert "succeeded" not in [s for r in reports for s in r["timeout_states"]]
    assert max(r["slowest"] for r in reports) <= TIMEOUT + BOUND
    assert max(r["pubsub_peak"] for r in reports) <= 1
    assert alive, "a worker died:\n" + workers.logs()
