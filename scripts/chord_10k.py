#!/usr/bin/env python3
"""Time a 10,000-member group and chord through real worker processes.

python scripts/with_redis.py -- .venv/bin/python scripts/chord_10k.py 10000
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aioq

ROOT = Path(__file__).resolve().parents[1]
app = aioq.App(prefix="aioq-chord10k")


@app.task(name="c10k.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="c10k.tsum")
async def tsum(values: list[int]) -> int:
    return sum(values)


async def main(n: int) -> None:
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aioq",
            "worker",
            "scripts.chord_10k:app",
            "-w",
            "2",
            "-c",
            "200",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    try:
        await (await add.kiq(0, 0)).result(timeout=30)  # workers are up
        t0 = time.perf_counter()
        g = await aioq.group(add.s(i, i) for i in range(n)).kiq()
        t1 = time.perf_counter()
        assert await g.result(timeout=120) == [2 * i for i in range(n)]
        t2 = time.perf_counter()
        c = await aioq.chord((add.s(i, 0) for i in range(n)), tsum.s()).kiq()
        t3 = time.perf_counter()
        assert await c.result(timeout=120) == sum(range(n))
        t4 = time.perf_counter()
        print(f"group of {n}: enqueued in {t1 - t0:.2f}s, all results in {t2 - t0:.2f}s")
        print(f"chord of {n}: enqueued in {t3 - t2:.2f}s, callback result in {t4 - t2:.2f}s")
    finally:
        worker.terminate()
        worker.wait(60)
        redis = app.broker.redis
        async for key in redis.scan_iter(match=f"{app.prefix}:*", count=1000):
            await redis.delete(key)
        await app.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
