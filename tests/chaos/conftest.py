"""Fixtures of the chaos suite: a private broker and oracle Redis per test, and a
fleet of ``aioq worker`` processes of ``tests.chaos.chaosapp``."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

import aioq
from tests.chaos import chaosapp
from tests.chaos.harness import ROOT, Fleet, RedisServer

VT = 2.0  # visibility timeout of the chaos app, seconds


@dataclass
class Chaos:
    broker: RedisServer
    oracle: RedisServer
    fleet: Fleet
    app: aioq.App
    rng: random.Random

    def states(self, job_ids: list[str]) -> list[bytes | None]:
        client = self.broker.client()
        try:
            pipe = client.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.hget(self.app.keys.job(job_id), "state")
            return list(pipe.execute())
        finally:
            client.close()

    async def wait_final(self, job_ids: list[str], timeout: float) -> list[bytes | None]:
        """Poll the records (tolerating a Redis that is down) until every job ended."""
        deadline = time.monotonic() + timeout
        states: list[bytes | None] = []
        while time.monotonic() < deadline:
            try:
                states = self.states(job_ids)
            except redis.ConnectionError:
                await asyncio.sleep(0.2)
                continue
            if all(s in (b"succeeded", b"failed", b"aborted") for s in states):
                return states
            await asyncio.sleep(0.2)
        return states

    def counts(self, name: str) -> dict[str, int]:
        client = self.oracle.client()
        try:
            return {k.decode(): int(v) for k, v in client.hgetall(name).items()}
        finally:
            client.close()

    def leftovers(self, queue: str = "default") -> tuple[int, int]:
        client = self.broker.client()
        try:
            stream = self.app.keys.stream(queue)
            if not client.exists(stream):
                return 0, 0
            return client.xlen(stream), client.xpending(stream, "workers")["pending"]
        finally:
            client.close()

    def report(self, name: str, job_ids: list[str], states: list[bytes | None]) -> dict[str, int]:
        executions = self.counts("executions")
        figures = {
            "tasks": len(job_ids),
            "kills": self.fleet.kills,
            "executions": sum(executions.get(j, 0) for j in job_ids),
            "duplicates": sum(max(0, executions.get(j, 0) - 1) for j in job_ids),
            "lost": sum(1 for s in states if s != b"succeeded"),
        }
        print(f"\n[chaos] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
        return figures


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[RedisServer, RedisServer]]:
    aof = getattr(request, "param", False)
    broker, oracle = RedisServer(aof=aof), RedisServer()
    yield broker, oracle
    broker.stop()
    oracle.stop()


@pytest.fixture
async def chaos(servers: tuple[RedisServer, RedisServer], tmp_path: Path) -> AsyncIterator[Chaos]:
    broker, oracle = servers
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": broker.url,
        "AIOQ_ORACLE_URL": oracle.url,
        "AIOQ_TEST_PREFIX": "chaos",
        "AIOQ_TEST_VT": str(VT),
        "PYTHONPATH": str(ROOT),
    }
    fleet = Fleet(env=env, logdir=tmp_path)
    app = chaosapp.app
    app.__init__(broker.url, prefix="chaos", visibility_timeout=VT)  # type: ignore[misc]
    for task in (chaosapp.work, chaosapp.flaky, chaosapp.step, chaosapp.total, chaosapp.limited):
        app.registry.add(task.definition)
    seed = int(os.environ.get("AIOQ_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"\n[chaos] seed={seed}")
    yield Chaos(broker, oracle, fleet, app, random.Random(seed))
    fleet.stop()
    await app.aclose()


async def wait_started(chaos: Chaos, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(chaos.counts("executions")) < n:
        assert time.monotonic() < deadline, "tasks did not start:\n" + chaos.fleet.logs()[-3000:]
        await asyncio.sleep(0.05)
