"""Per-task cost of lifecycle events: a worker (in this process, concurrency 100,
uvloop) drains 20,000 pre-enqueued no-ops with events on (``events_maxlen=10_000``:
``started`` and ``succeeded`` per task) and off (``events_maxlen=0``), alternating,
median of 5 runs each. Reports wall time, worker CPU (this process), Redis CPU
(the server's ``used_cpu_user + used_cpu_sys`` from INFO cpu: commandstats would
count a script's inner commands twice) per task, and the on/off ratios.

    python scripts/with_redis.py -- .venv/bin/python benchmarks/events_cost.py [N] [RUNS]

It FLUSHALLs the Redis it is given: only point it at a private one (with_redis.py
starts one).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

import redis

import aioq
from aioq.testing import running_worker

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
URL = os.environ["AIOQ_REDIS_URL"]


def make(events_maxlen: int) -> tuple[aioq.App, aioq.Task[[], None]]:
    app = aioq.App(URL, prefix="evcost", events_maxlen=events_maxlen)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app, noop


def server_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def once(events_maxlen: int, r: redis.Redis) -> tuple[float, float, float, int]:
    r.flushall()
    app, noop = make(events_maxlen)
    await noop.kiq_many([()] * N)
    r0 = server_cpu(r)
    t0, c0 = time.perf_counter(), time.process_time()
    async with running_worker(app, concurrency=100) as w:
        await w.drain(timeout=600)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        redis_cpu = server_cpu(r) - r0
    written = int(r.xlen(app.keys.events("default")))
    await app.aclose()
    return wall, cpu, redis_cpu, written


async def main() -> None:
    r = redis.Redis.from_url(URL)
    rows: dict[str, list[tuple[float, float, float, int]]] = {"on": [], "off": []}
    for _ in range(RUNS):
        for mode in ("on", "off"):
            rows[mode].append(await once(10_000 if mode == "on" else 0, r))
    med = {
        mode: [statistics.median(row[i] for row in v) for i in range(3)] for mode, v in rows.items()
    }
    for mode, (wall, cpu, redis_cpu) in med.items():
        print(
            f"events {mode:3}  {N / wall:8,.0f} tasks/s  wall {wall:.3f} s  "
            f"worker CPU {cpu / N * 1e6:5.1f} us/task  Redis CPU {redis_cpu / N * 1e6:5.1f} us/task"
            f"  (events kept: {rows[mode][-1][3]:,})"
        )
    on, off = med["on"], med["off"]
    print(
        f"on/off: wall x{on[0] / off[0]:.3f}, worker CPU x{on[1] / off[1]:.3f}, "
        f"Redis CPU x{on[2] / off[2]:.3f}  (median of {RUNS} runs, N={N:,})"
    )
    r.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
