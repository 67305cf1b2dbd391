"""Where a task's Redis CPU goes: INFO commandstats deltas per command.

    python benchmarks/redis_profile.py redis://127.0.0.1:6379/0 [N] [aioq|raw|both]

Runs the drain of ``redis_cpu.py`` (N no-op jobs sent with ``kiq_many``, one
in-process worker at concurrency 100, then ``aioq.gather``) and the raw redis-py
loop of ``benchmarks/systems/raw_.py`` (pipelined XADD; XREADGROUP COUNT 500, then
one pipeline of XACK + SET per batch), and prints for each the Redis CPU per task
(INFO ``used_cpu_user + used_cpu_sys``) and, per command, its calls and µs per task
and per call from ``INFO commandstats`` (which also counts the commands a Lua
script runs: ``evalsha`` includes them, so the per-command rows below it are the
split of the scripts' time, not extra time). One Redis server only.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
from redis.exceptions import ResponseError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.redis_cpu import drain_noops

Stats = dict[str, tuple[int, int]]


async def _snapshot(r: aredis.Redis) -> tuple[float, Stats, float, int]:
    cpu = await r.info("cpu")
    raw = await r.info("commandstats")
    stats = {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in raw.items()
    }
    user, system = float(cpu["used_cpu_user"]), float(cpu["used_cpu_sys"])
    reads = int((await r.info("stats"))["total_reads_processed"])
    return user + system, stats, system, reads


def _report(label: str, n: int, took: float, before: Any, after: Any) -> None:
    cpu = (after[0] - before[0]) * 1e6 / n
    rows = []
    for name, (calls, usec) in after[1].items():
        c0, u0 = before[1].get(name, (0, 0))
        if name in ("info",) or calls == c0:
            continue
        rows.append((name, calls - c0, usec - u0))
    rows.sort(key=lambda row: -row[2])
    total = sum(u for name, _, u in rows if name not in ("evalsha", "eval"))
    system = (after[2] - before[2]) * 1e6 / n
    reads = (after[3] - before[3]) / n
    print(f"\n{label}: {n} tasks in {took:.2f} s, Redis CPU {cpu:.1f} µs/task")
    print(f"of which system {system:.1f} µs/task; socket reads {reads:.3f}/task")
    print(f"commands (sum of non-script rows) {total / n:.1f} µs/task")
    print("| command | calls/task | µs/task | µs/call |")
    print("| --- | ---: | ---: | ---: |")
    for name, calls, usec in rows:
        print(f"| {name} | {calls / n:.3f} | {usec / n:.2f} | {usec / calls:.2f} |")


async def run_aioq(url: str, n: int) -> None:
    r = aredis.Redis.from_url(url)
    try:
        took, before, after = await drain_noops(url, n, lambda: _snapshot(r))
    finally:
        await r.aclose()
    _report("aioq", n, took, before, after)


async def run_raw(url: str, n: int) -> None:
    r = aredis.Redis.from_url(url)
    prefix = f"raw-{uuid.uuid4().hex[:8]}"
    stream, group = f"{prefix}:stream", "workers"
    before = await _snapshot(r)
    began = time.perf_counter()
    for i in range(0, n, 1000):
        pipe = r.pipeline(transaction=False)
        for _ in range(i, min(n, i + 1000)):
            pipe.xadd(stream, {"id": uuid.uuid4().hex, "t": "noop"})
        await pipe.execute()
    try:
        await r.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError:
        pass
    done = 0
    while done < n:
        reply = await r.xreadgroup(group, "raw-1", {stream: ">"}, count=500, block=1000)
        if not reply:
            continue
        entries = reply[0][1]
        pipe = r.pipeline(transaction=False)
        pipe.xack(stream, group, *[eid for eid, _ in entries])
        for _, fields in entries:
            pipe.set(f"{prefix}:result:{fields[b'id'].decode()}", b"null", ex=3600)
        await pipe.execute()
        done += len(entries)
    took = time.perf_counter() - began
    after = await _snapshot(r)
    await r.aclose()
    _report("raw loop", n, took, before, after)


async def main(url: str, n: int, which: str) -> None:
    if which in ("raw", "both"):
        await run_raw(url, n)
    if which in ("aioq", "both"):
        await run_aioq(url, n)


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1],
            int(sys.argv[2]) if len(sys.argv) > 2 else 20_000,
            sys.argv[3] if len(sys.argv) > 3 else "both",
        )
    )
