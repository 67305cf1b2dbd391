"""Where a draining worker's CPU goes when each task does one Redis command.

    python scripts/with_redis.py -- .venv/bin/python benchmarks/io_profile.py
    python scripts/with_redis.py -- .venv/bin/python benchmarks/io_profile.py --tasks io --top 25
    python scripts/with_redis.py -- py-spy record -r 250 -f raw -o io.txt -- \\
        .venv/bin/python benchmarks/io_profile.py --tasks io --no-calls

For each task of ``benchmarks/systems/aioq_.py`` named (``noop``, ``io``: one INCR
through a client the task module opened, ``io_shared``: one INCR through the
client an ``on_worker_start`` hook put in ``ctx.state``; ``incr``: no queue, the
same INCR through ``base.open_client()`` in as many coroutines as the
concurrency, for what the command alone costs), enqueue ``--n`` jobs
with ``kiq_many``, then drain them with an in-process ``aioq.Worker(burst=True)``
on uvloop, concurrency 100 (scenario B's), and print the rate, the process's CPU
per task, and the Python function calls per task (cProfile, counted over the
drain only). Calls per task hardly move with the machine's load, unlike time;
cProfile slows the drain down, so the rate and CPU are measured in a second,
unprofiled drain. Uses ``AIOQ_REDIS_URL`` (a private server: its keys are left).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

if "AIOQ_REDIS_URL" not in os.environ:
    sys.exit("run it under scripts/with_redis.py (or set AIOQ_REDIS_URL)")
os.environ["BENCH_REDIS_URL"] = os.environ["AIOQ_REDIS_URL"]
os.environ["BENCH_PREFIX"] = f"ioprof-{uuid.uuid4().hex[:8]}"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvloop

import aioq
from benchmarks.systems import aioq_, base


async def enqueue(task: str, n: int) -> None:
    for i in range(0, n, 5000):
        await aioq_.TASKS[task].kiq_many([()] * min(5000, n - i))


async def drain(concurrency: int) -> None:
    worker = aioq.Worker(aioq_.app, concurrency=concurrency, burst=True)
    worker.tune_gc = True  # as `aioq worker` does (an attribute older trees ignore)
    await worker.run()


async def incr_alone(n: int, concurrency: int, profile: cProfile.Profile | None) -> None:
    client = base.open_client()

    async def loop(k: int) -> None:
        for _ in range(k):
            await client.incr(base.IO_KEY)

    await asyncio.gather(*(loop(1) for _ in range(concurrency)))  # open the connections
    if profile is not None:
        profile.enable()
    await asyncio.gather(*(loop(n // concurrency) for _ in range(concurrency)))
    if profile is not None:
        profile.disable()
    await client.aclose()


def one(task: str, n: int, concurrency: int, profile: cProfile.Profile | None) -> dict[str, float]:
    if task == "incr":
        t0, c0 = time.perf_counter(), time.process_time()
        uvloop.run(incr_alone(n, concurrency, profile))
        t1, c1 = time.perf_counter(), time.process_time()
        return {"per_s": n / (t1 - t0), "cpu_us": 1e6 * (c1 - c0) / n}
    uvloop.run(enqueue(task, n))
    t0, c0 = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    uvloop.run(drain(concurrency))
    if profile is not None:
        profile.disable()
    t1, c1 = time.perf_counter(), time.process_time()
    return {"per_s": n / (t1 - t0), "cpu_us": 1e6 * (c1 - c0) / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", default="noop,io,io_shared,incr")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("-c", "--concurrency", type=int, default=100)
    ap.add_argument("--no-calls", action="store_true", help="skip the cProfile drain")
    ap.add_argument("--top", type=int, default=0, help="print the N costliest functions")
    args = ap.parse_args()
    for task in args.tasks.split(","):
        got = one(task, args.n, args.concurrency, None)
        line = f"{task:10} {got['per_s']:8,.0f}/s  {got['cpu_us']:6.1f} us CPU/task"
        if not args.no_calls:
            profile = cProfile.Profile()
            one(task, args.n, args.concurrency, profile)
            stats = pstats.Stats(profile)
            line += f"  {stats.total_calls / args.n:6.1f} Python calls/task"  # type: ignore[attr-defined]
            if args.top:
                stats.sort_stats("tottime").print_stats(args.top)
        print(line, flush=True)


if __name__ == "__main__":
    main()
