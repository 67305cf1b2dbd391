"""Sync callers: what ``task.delay()`` / ``SyncJob.get()`` cost from plain threads.

    PYTHONPATH=$PWD python scripts/with_redis.py -- python benchmarks/sync_callers.py

Needs ``AIOQ_REDIS_URL`` (``scripts/with_redis.py`` sets it to a private server).
Starts one ``aioq worker`` subprocess (``-c 100``), then measures, on a fresh key
prefix it deletes afterwards:

- ``delay()`` alone from one thread (enqueue rate);
- ``delay().get()`` from 20 threads × 50 calls (round trips through the worker),
  with the number of Redis connections this process holds meanwhile;
- the workaround users had before: ``asyncio.run()`` per call, closing the app
  each time (a fresh client per call).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid

import redis

import aioq
import aioq.sync

PREFIX = os.environ.get("AIOQ_BENCH_PREFIX") or f"aioqbench-{uuid.uuid4().hex[:8]}"
app = aioq.App(prefix=PREFIX)


@app.task(name="bench.add")
async def add(x: int, y: int) -> int:
    return x + y


def _connections(url: str) -> int:
    """Every connection Redis has now (this probe's included): compared with a
    baseline taken the same way, the growth is this process's sync loop's."""
    probe = redis.Redis.from_url(url)
    try:
        return len(probe.client_list())
    finally:
        probe.close()


def main() -> None:
    url = os.environ["AIOQ_REDIS_URL"]
    env = dict(os.environ, AIOQ_BENCH_PREFIX=PREFIX)
    worker = subprocess.Popen(
        [sys.executable, "-m", "aioq", "worker", "benchmarks.sync_callers:app", "-c", "100"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert add.delay(1, 1).get(timeout=30) == 2  # warm up: worker ready, loop started
        baseline = _connections(url)

        n = 2000
        start = time.perf_counter()
        for i in range(n):
            add.delay(i, i)
        took = time.perf_counter() - start
        print(f"delay() x{n}, 1 thread: {n / took:,.0f}/s ({took / n * 1e6:,.0f} µs each)")

        threads, per = 20, 50
        peak = [0]

        def client(t: int) -> None:
            for i in range(per):
                assert add.delay(t, i).get(timeout=30) == t + i
            peak[0] = max(peak[0], _connections(url) - baseline)

        pool = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        start = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        took = time.perf_counter() - start
        total = threads * per
        print(
            f"delay().get() {threads} threads x {per}: {total / took:,.0f}/s "
            f"({took:.2f} s); extra Redis connections seen: {peak[0]}"
        )

        async def once(i: int) -> None:
            await add.kiq(i, i)
            await app.aclose()

        m = 300
        start = time.perf_counter()
        for i in range(m):
            asyncio.run(once(i))
        took = time.perf_counter() - start
        print(f"asyncio.run(kiq + aclose) x{m}, 1 thread: {m / took:,.0f}/s (the old workaround)")
    finally:
        worker.terminate()
        worker.wait(30)
        aioq.sync.shutdown()
        cleanup = redis.Redis.from_url(url)
        keys = list(cleanup.scan_iter(match=f"{PREFIX}:*", count=1000))
        for i in range(0, len(keys), 500):
            cleanup.delete(*keys[i : i + 500])
        cleanup.close()


if __name__ == "__main__":
    main()
