"""Rate limits and max_running, enforced across several worker processes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis

import aioq
from tests import limitsapp
from tests.conftest import on_cluster_too
from tests.integration import test_process

spawn = test_process.spawn  # the worker-process fixture

pytestmark = pytest.mark.slow


@pytest.fixture
async def client(broker_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    limitsapp.app.__init__(broker_url, prefix=prefix, visibility_timeout=2.0)  # type: ignore[misc]
    for task in (limitsapp.paced, limitsapp.capped):
        limitsapp.app.registry.add(task.definition)
    yield limitsapp.app
    await limitsapp.app.aclose()


def start_workers(spawn, n: int) -> None:  # type: ignore[no-untyped-def]
    procs = [spawn("worker", "tests.limitsapp:app", "-c", "20") for _ in range(n)]
    for proc in procs:
        proc.wait_for_output("task(s) registered")


async def test_rate_limit_holds_across_three_workers(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, sync_redis: redis.Redis, prefix: str
) -> None:
    start_workers(spawn, 3)
    sent = time.time()
    jobs = await limitsapp.paced.kiq_many([(i,) for i in range(200)])
    results = await aioq.gather(*jobs, timeout=60)
    took = time.time() - sent
    assert sorted(results) == list(range(200))  # every job ran (none dropped)
    starts = sorted(float(s) for s in sync_redis.lrange(f"{prefix}:starts", 0, -1))
    assert len(starts) == 200  # and ran once
    # 20/s, evenly spaced: 200 starts need at least 199 intervals of 50 ms
    assert took >= 9.5, took
    worst = max(sum(1 for t in starts[i:] if t < start + 1.0) for i, start in enumerate(starts))
    print(f"200 jobs at 20/s on 3 workers: {took:.2f} s, busiest 1 s window {worst} starts")
    assert worst <= 20, f"{worst} starts within one second"
    assert sync_redis.scard(f"{prefix}:workers") >= 2  # the limit was shared, not local


@on_cluster_too
async def test_a_rate_limit_holds_on_one_node_and_on_the_cluster(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, broker_redis: redis.Redis, prefix: str
) -> None:
    """The shorter version of the test above, also on the cluster (the limit's
    keys share the task's hash tag: one slot, one script)."""
    start_workers(spawn, 2)
    sent = time.time()
    jobs = await limitsapp.paced.kiq_many([(i,) for i in range(60)])
    assert sorted(await aioq.gather(*jobs, timeout=60)) == list(range(60))
    took = time.time() - sent
    starts = sorted(float(s) for s in broker_redis.lrange(f"{prefix}:starts", 0, -1))
    assert len(starts) == 60
    assert took >= 2.8, took  # 59 intervals of 50 ms
    worst = max(sum(1 for t in starts[i:] if t < start + 1.0) for i, start in enumerate(starts))
    assert worst <= 20, f"{worst} starts within one second"


@on_cluster_too
async def test_max_running_caps_concurrency_across_workers(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, broker_redis: redis.Redis, prefix: str
) -> None:
    start_workers(spawn, 3)
    jobs = await limitsapp.capped.kiq_many([(0.2,)] * 20)
    await aioq.gather(*jobs, timeout=60)
    seen = [int(v) for v in broker_redis.lrange(f"{prefix}:seen", 0, -1)]
    assert len(seen) == 20
    assert max(seen) <= 2, seen
    assert max(seen) == 2  # and the limit is used, not serialised to one
    assert broker_redis.scard(f"{prefix}:workers") >= 2
    # every slot was given back when its job ended
    assert broker_redis.zcard(client.keys.running(limitsapp.capped.name)) == 0
