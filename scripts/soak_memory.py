#!/usr/bin/env python3
"""Memory soak: push N no-op tasks through real workers and report Redis memory.

    python scripts/with_redis.py -- .venv/bin/python scripts/soak_memory.py 1000000

Reports ``used_memory`` before the run, at the end of the drain, and once the
job records' ``result_ttl`` (5 s here) has passed: acked messages are deleted
from the stream (XACK + XDEL), so what remains after the drain is the records,
and after their TTL, nothing.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

import aioq

ROOT = Path(__file__).resolve().parents[1]
APP_MODULE = "scripts.soak_memory"

app = aioq.App(prefix="aioq-soak", result_ttl=5.0)


@app.task(name="soak.noop")  # the same name here and in the worker, which imports this module
async def noop() -> None:
    return None


def mb(client: redis.Redis) -> float:
    return int(client.info("memory")["used_memory"]) / 1e6


async def main(n: int) -> None:
    client = redis.Redis.from_url(app.url)
    before = mb(client)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aioq",
            "worker",
            f"{APP_MODULE}:app",
            "-w",
            "2",
            "-c",
            "200",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )
    started = time.perf_counter()
    peak = before
    batch = 20_000
    for i in range(0, n, batch):
        await noop.kiq_many([()] * min(batch, n - i))
        peak = max(peak, mb(client))
    stream = app.keys.stream("default")
    while client.xlen(stream) > 0:
        peak = max(peak, mb(client))
        time.sleep(0.2)
    drained = time.perf_counter() - started
    after_drain = mb(client)
    worker.terminate()
    worker.wait(60)
    time.sleep(7)  # records expire after result_ttl = 5 s
    deadline = time.monotonic() + 60
    while client.dbsize() > 5 and time.monotonic() < deadline:
        time.sleep(0.5)
    after_ttl = mb(client)
    keys = client.dbsize()
    print(f"tasks={n} drain={drained:.1f}s ({n / drained:,.0f}/s with -w 2)")
    print(
        f"used_memory MB: before={before:.1f} peak={peak:.1f} after_drain={after_drain:.1f} "
        f"after_ttl={after_ttl:.1f} keys_left={keys}"
    )
    for key in client.scan_iter(match=f"{app.prefix}:*"):
        client.delete(key)
    client.close()
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
