"""What uvloop buys a draining worker: the same in-process drain on uvloop and on
asyncio's own loop (``aioq worker --loop asyncio``), alternating.

    python scripts/with_redis.py -- .venv/bin/python benchmarks/loop_cost.py
    python scripts/with_redis.py -- .venv/bin/python benchmarks/loop_cost.py --tasks noop --reps 7

For each repetition and task of ``benchmarks/systems/aioq_.py`` (``noop``;
``io_shared``: one INCR through the client an ``on_worker_start`` hook opened),
``--n`` jobs are enqueued with ``kiq_many`` (not timed), then drained by an
in-process ``aioq.Worker(burst=True)``, concurrency 100, once on each loop in
turn. Reported: the drain's rate and this process's CPU per task
(``time.process_time``, which the machine's load disturbs less than rates), as
medians with their range. Uses ``AIOQ_REDIS_URL`` (a private server; its keys are
left). See benchmarks/README.md, "Worker memory, 2026-11-29 evening".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

if "AIOQ_REDIS_URL" not in os.environ:
    sys.exit("run it under scripts/with_redis.py (or set AIOQ_REDIS_URL)")
os.environ["BENCH_REDIS_URL"] = os.environ["AIOQ_REDIS_URL"]
os.environ["BENCH_PREFIX"] = f"loopcost-{uuid.uuid4().hex[:8]}"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

import aioq
from benchmarks.systems import aioq_

LOOPS = {"uvloop": uvloop.run, "asyncio": asyncio.run}


async def enqueue(task: str, n: int) -> None:
    for i in range(0, n, 5000):
        await aioq_.TASKS[task].kiq_many([()] * min(5000, n - i))
    await aioq_.app.aclose()


async def drain(concurrency: int) -> None:
    await aioq.Worker(aioq_.app, concurrency=concurrency, burst=True).run()
    await aioq_.app.aclose()


def one(loop: str, task: str, n: int, concurrency: int) -> tuple[float, float]:
    """(jobs per second, CPU µs per job) of one drain on ``loop``."""
    asyncio.run(enqueue(task, n))
    t0, c0 = time.perf_counter(), time.process_time()
    LOOPS[loop](drain(concurrency))
    t1, c1 = time.perf_counter(), time.process_time()
    return n / (t1 - t0), 1e6 * (c1 - c0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", default="noop,io_shared")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("-c", "--concurrency", type=int, default=100)
    args = ap.parse_args()
    print(f"load before {os.getloadavg()[0]:.2f}", flush=True)
    got: dict[tuple[str, str], list[tuple[float, float]]] = {}
    one("uvloop", "noop", 1000, args.concurrency)  # warm: connections, scripts loaded
    for rep in range(args.reps):
        for task in args.tasks.split(","):
            order = list(LOOPS) if rep % 2 == 0 else list(reversed(LOOPS))
            for loop in order:
                got.setdefault((task, loop), []).append(one(loop, task, args.n, args.concurrency))
    print(f"load after {os.getloadavg()[0]:.2f}; medians of {args.reps} (range)")
    for (task, loop), runs in got.items():
        rates, cpu = [r for r, _ in runs], [c for _, c in runs]
        print(
            f"{task:10} {loop:8} drain {statistics.median(rates):8,.0f}/s "
            f"({min(rates):,.0f}-{max(rates):,.0f})  CPU {statistics.median(cpu):6.1f} us/task "
            f"({min(cpu):.1f}-{max(cpu):.1f})"
        )


if __name__ == "__main__":
    main()
