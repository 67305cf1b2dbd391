"""Client CPU, Redis CPU and wall time of sending 20,000 no-op jobs, one by one
(32 concurrent callers) and with ``kiq_many``; best of 5. Redis CPU is the sum of
INFO commandstats' usec, reset before each run.

    python scripts/with_redis.py -- .venv/bin/python benchmarks/enqueue_cost.py

It FLUSHALLs the Redis it is given: only point it at a private one (with_redis.py
starts one).
"""

from __future__ import annotations

import asyncio
import os
import time

import redis

import aioq

N = 20_000
URL = os.environ["AIOQ_REDIS_URL"]
app = aioq.App(URL, prefix="enqcost")


@app.task(name="noop")
async def noop() -> None:
    return None


async def main() -> None:
    r = redis.Redis.from_url(URL)
    await noop.kiq()  # scripts loaded, connections open
    results: dict[str, list[tuple[float, float, float]]] = {"batch": [], "one": []}
    for _ in range(5):
        for mode in ("batch", "one"):
            r.flushall()
            r.config_resetstat()
            t0, c0 = time.perf_counter(), time.process_time()
            if mode == "batch":
                await noop.kiq_many([()] * N)
            else:

                async def caller() -> None:
                    for _ in range(N // 32):
                        await noop.kiq()

                await asyncio.gather(*(caller() for _ in range(32)))
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            redis_cpu = sum(v["usec"] for v in r.info("commandstats").values()) / 1e6
            results[mode].append((wall, cpu, redis_cpu))
    for mode, rows in results.items():
        wall, cpu, redis_cpu = (min(row[i] for row in rows) for i in range(3))
        print(
            f"{mode:5}  wall {wall:.3f} s  client CPU {cpu:.3f} s  Redis CPU {redis_cpu:.3f} s"
            f"  ({redis_cpu / N * 1e6:.1f} us per send)"
        )
    r.close()
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())
