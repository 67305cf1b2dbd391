"""Where a worker's time goes when it drains many queues (scenario M, in-process).

    python scripts/with_redis.py -- .venv/bin/python benchmarks/many_profile.py
    python scripts/with_redis.py -- .venv/bin/python benchmarks/many_profile.py \\
        --queues 1000 --n 20000 --profile --top 30

For each queue count (``--queues``, default ``1,1000``), enqueue ``--n`` no-op jobs
spread over queues ``q0`` … the way scenario M's client does (``kiq_many`` per
queue), then drain them with an in-process ``aioq.Worker`` on uvloop (concurrency
100, scenario M's) and print:

- the phases from ``Worker.run()``: ready (connected, groups made, reading), the
  first task run, the last task run; the rate from ``run()`` (what scenario M
  counts, minus the process's spawn and imports) and after the first task;
- the process's CPU per task over the drain (``time.process_time``: the heartbeat
  thread included) and Redis' (``INFO`` ``used_cpu_*``);
- the heartbeat's renewals: beats, ``renew.lua`` calls (one per level stream
  held) and entries renewed;
- with ``--commands``, Redis' ``INFO commandstats`` delta per task: calls and µs
  of each command (scripts count as ``evalsha``, their commands inside under
  their own names);
- with ``--profile``, a second drain under cProfile (``--startup``: from ``run()``
  to the first task only): the ``--top`` functions by ``--sort`` (own time), and
  the Python calls per task (cProfile slows the drain: the figures above come
  from the unprofiled one).

A task counts as run when its attempt ended (``Dispatcher.processed``): its
completion is written within one completer batch after that. Uses
``AIOQ_REDIS_URL`` (a private server: this script deletes its own keys, by
prefix, between drains).
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
from typing import Any

if "AIOQ_REDIS_URL" not in os.environ:
    sys.exit("run it under scripts/with_redis.py (or set AIOQ_REDIS_URL)")
os.environ["BENCH_REDIS_URL"] = os.environ["AIOQ_REDIS_URL"]
os.environ["BENCH_PREFIX"] = PREFIX = f"mqprof-{uuid.uuid4().hex[:8]}"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import uvloop

import aioq
from benchmarks.systems import aioq_

BEATS = {"beats": 0, "streams": 0, "entries": 0}
"""What the heartbeat thread renewed: beats, renew.lua calls (one per level stream
held), entries."""


def _count_renewals() -> None:
    from aioq._transport.leases import LeaseRenewer

    renew = LeaseRenewer.renew

    def counted(self: LeaseRenewer, held: Any, status: Any = None) -> Any:
        BEATS["beats"] += 1
        BEATS["streams"] += len(held)
        BEATS["entries"] += sum(len(ids) for ids in held.values())
        return renew(self, held, status)

    LeaseRenewer.renew = counted  # type: ignore[method-assign]


def queue_names(q: int) -> list[str]:
    return ["default"] if q == 1 else [f"q{i}" for i in range(q)]


async def enqueue(queues: list[str], n: int) -> None:
    noop = aioq_.TASKS["noop"]
    per = -(-n // len(queues))
    for i, queue in enumerate(queues):
        chunk = min(per, n - i * per)
        if chunk > 0:
            await noop.with_options(queue=queue).kiq_many([()] * chunk)
    await aioq_.app.aclose()


async def drain(
    queues: list[str],
    n: int,
    concurrency: int,
    marks: dict[str, float],
    startup: cProfile.Profile | None = None,
) -> None:
    worker = aioq.Worker(aioq_.app, queues=queues, concurrency=concurrency)

    async def watch() -> None:
        await worker.ready.wait()
        marks["ready"] = time.perf_counter()
        while worker._dispatcher is None or worker._dispatcher.processed == 0:
            await asyncio.sleep(0.001)
        marks["first"] = time.perf_counter()
        if startup is not None:
            startup.disable()  # --startup: profile run() up to the first task only
        marks["cpu_first"] = time.process_time()
        while worker._dispatcher.processed < n:
            await asyncio.sleep(0.005)
        marks["done"] = time.perf_counter()
        marks["cpu_done"] = time.process_time()
        worker.stop()

    watcher = asyncio.ensure_future(watch())
    marks["run"] = time.perf_counter()
    marks["cpu_run"] = time.process_time()
    await worker.run()
    await watcher
    await aioq_.app.aclose()


def redis_cpu(r: redis.Redis) -> float:
    info: Any = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commandstats(r: redis.Redis) -> dict[str, tuple[int, float]]:
    info: Any = r.info("commandstats")
    return {
        k.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"])) for k, v in info.items()
    }


def clean(r: redis.Redis) -> None:
    keys = list(r.scan_iter(match=f"{PREFIX}:*", count=5000))
    for i in range(0, len(keys), 1000):
        r.unlink(*keys[i : i + 1000])


def one(
    r: redis.Redis,
    q: int,
    n: int,
    concurrency: int,
    profile: cProfile.Profile | None,
    startup: bool = False,
) -> dict[str, Any]:
    clean(r)
    queues = queue_names(q)
    uvloop.run(enqueue(queues, n))
    marks: dict[str, float] = {}
    BEATS.update(beats=0, streams=0, entries=0)
    c0, s0 = redis_cpu(r), commandstats(r)
    if profile is not None:
        profile.enable()
    uvloop.run(drain(queues, n, concurrency, marks, profile if startup else None))
    if profile is not None:
        profile.disable()
    c1, s1 = redis_cpu(r), commandstats(r)
    delta = {
        k: (calls - s0.get(k, (0, 0.0))[0], usec - s0.get(k, (0, 0.0))[1])
        for k, (calls, usec) in s1.items()
        if calls != s0.get(k, (0, 0.0))[0]
    }
    run = marks["run"]
    return {
        "ready_s": marks["ready"] - run,
        "first_s": marks["first"] - run,
        "done_s": marks["done"] - run,
        "per_s": n / (marks["done"] - run),
        "steady_per_s": n / (marks["done"] - marks["first"]),
        "cpu_us": 1e6 * (marks["cpu_done"] - marks["cpu_run"]) / n,
        "cpu_startup_ms": 1e3 * (marks["cpu_first"] - marks["cpu_run"]),
        "redis_us": 1e6 * (c1 - c0) / n,
        "commands": delta,
        **BEATS,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--queues", default="1,1000")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("-c", "--concurrency", type=int, default=100)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--commands", action="store_true", help="INFO commandstats per task")
    ap.add_argument("--profile", action="store_true", help="a cProfile drain too")
    ap.add_argument("--startup", action="store_true", help="profile up to the first task only")
    ap.add_argument("--top", type=int, default=25, help="functions printed with --profile")
    ap.add_argument("--sort", default="tottime", help="pstats order with --profile")
    args = ap.parse_args()
    _count_renewals()
    r = redis.Redis.from_url(os.environ["AIOQ_REDIS_URL"])
    try:
        for _ in range(args.reps):
            for q in (int(x) for x in args.queues.split(",")):
                got = one(r, q, args.n, args.concurrency, None)
                print(
                    f"{q:6,} queues: ready {got['ready_s']:.3f} s, first task {got['first_s']:.3f}"
                    f" s, last {got['done_s']:.3f} s | {got['per_s']:7,.0f}/s from run(),"
                    f" {got['steady_per_s']:7,.0f}/s after the first | worker"
                    f" {got['cpu_us']:5.1f} us/task (start-up {got['cpu_startup_ms']:.0f} ms),"
                    f" Redis {got['redis_us']:5.1f} us/task",
                    flush=True,
                )
                print(
                    f"    heartbeat: {got['beats']} beats, {got['streams']} renew.lua calls"
                    f" (one per level stream held), {got['entries']} entries renewed"
                )
                if args.commands:
                    rows = sorted(got["commands"].items(), key=lambda kv: -kv[1][1])
                    for name, (calls, usec) in rows:
                        print(
                            f"    {name:24} {calls / args.n:8.3f} calls/task"
                            f" {usec / args.n:7.2f} us/task  {usec / max(calls, 1):8.1f} us/call"
                        )
                if args.profile:
                    profile = cProfile.Profile()
                    one(r, q, args.n, args.concurrency, profile, args.startup)
                    stats = pstats.Stats(profile)
                    calls = stats.total_calls / args.n  # type: ignore[attr-defined]
                    print(f"    cProfile: {calls:.1f} Python calls/task", flush=True)
                    stats.sort_stats(args.sort).print_stats(args.top)
    finally:
        clean(r)
        r.close()


if __name__ == "__main__":
    main()
