"""Client side of one scenario, run with a system's own venv python.

    <venv>/bin/python benchmarks/driver.py <system> '<json params>'

Prints JSON lines on stdout; the last one is the result. Scenarios that need the
harness to act in the middle (start or kill a worker) print ``{"phase": ...}``
and wait for a line on stdin. Times are ``time.monotonic()`` (CLOCK_MONOTONIC,
shared by every process on the machine), so the harness can compare them with
its own.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.systems import load

POLL = 0.01
STALL = 20.0  # seconds without a single job finishing: report the jobs as stuck


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def wait_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def enqueue_all(mod: Any, client: Any, task: str, calls: list[tuple[Any, ...]]) -> list[Any]:
    """The fastest way the system offers: its batch API, else 32 concurrent calls."""
    if mod.BATCH:
        return await client.enqueue_many(task, calls)
    return await gathered(client, task, calls, 32)


async def gathered(client: Any, task: str, calls: list[tuple[Any, ...]], conc: int) -> list[Any]:
    handles: list[Any] = [None] * len(calls)
    it = iter(range(len(calls)))

    async def one() -> None:
        for i in it:
            handles[i] = await client.enqueue(task, calls[i])

    await asyncio.gather(*(one() for _ in range(conc)))
    return handles


async def wait_done(
    client: Any, handles: list[Any], timeout: float
) -> tuple[float, float, int, int]:
    """Poll until every result is visible: (first done, last done, jobs stuck, jobs
    not done yet when the first result was seen)."""
    start = time.monotonic()
    deadline = start + timeout
    first = 0.0
    n = last = first_left = len(handles)
    progress = start
    while True:
        left = await client.remaining(handles)
        now = time.monotonic()
        if left < n and not first:
            first, first_left = now, left
        if left == 0:
            return first, now, 0, first_left
        if left != last:
            last, progress = left, now
        if now > deadline:
            raise TimeoutError(f"{left} of {n} jobs unfinished after {now - start:.1f} s")
        if first and now - progress > STALL and left * 100 < n:
            # A few jobs never finish (seen with saq): report the rest, flag these.
            print(f"STUCK: {left} of {n} jobs never finished", file=sys.stderr)
            return first, progress, left, first_left
        if first and now - progress > STALL:
            raise TimeoutError(f"{left} of {n} jobs unfinished, no progress for {STALL} s")
        await asyncio.sleep(POLL)


async def warm_up(client: Any) -> None:
    """One round trip, so the worker is known to be up and idle."""
    handle = await client.enqueue("noop", ())
    await client.result(handle, 120.0)


async def scenario(mod: Any, client: Any, p: dict[str, Any]) -> dict[str, Any]:
    name, n = p["scenario"], p["n"]
    calls: list[tuple[Any, ...]] = [tuple(p.get("args", ()))] * n
    task = p.get("task", "noop")
    if name == "enqueue_one":
        t = time.monotonic()
        await gathered(client, task, calls, p.get("concurrency", 32))
        return {"seconds": time.monotonic() - t}
    if name == "enqueue_batch":
        t = time.monotonic()
        await client.enqueue_many(task, calls)
        return {"seconds": time.monotonic() - t}
    if name == "drain":  # B, F: enqueue, let the harness start (or kill) workers, wait
        handles = await enqueue_all(mod, client, task, calls)
        emit({"phase": "enqueued", "at": time.monotonic()})
        await wait_line()
        first, done, stuck, first_left = await wait_done(client, handles, p.get("timeout", 120.0))
        return {"first_done": first, "done": done, "stuck": stuck, "first_left": first_left}
    if name == "burst":  # C: worker already running
        await warm_up(client)
        t = time.monotonic()
        handles = await enqueue_all(mod, client, task, calls)
        enqueued = time.monotonic()
        _, done, stuck, _ = await wait_done(client, handles, p.get("timeout", 120.0))
        return {"seconds": done - t, "enqueue_seconds": enqueued - t, "stuck": stuck}
    if name == "roundtrip":  # D
        for _ in range(20):
            await warm_up(client)
        lat = []
        for _ in range(n):
            t = time.monotonic()
            handle = await client.enqueue(task, ())
            await client.result(handle, 30.0)
            lat.append(time.monotonic() - t)
        return {"latencies": lat}
    if name == "recovery":  # F: worker running; harness kills it after "enqueued"
        await warm_up(client)
        handles = await enqueue_all(mod, client, task, calls)
        emit({"phase": "enqueued", "at": time.monotonic()})
        await wait_line()
        first, done, stuck, _ = await wait_done(client, handles, p.get("timeout", 120.0))
        return {"first_done": first, "done": done, "stuck": stuck}
    if name == "idle":  # M: the worker is up and idle; the harness measures, then says go
        await warm_up(client)
        emit({"phase": "idle", "at": time.monotonic()})
        await wait_line()
        return {}
    raise ValueError(f"unknown scenario {name!r}")


async def main() -> None:
    mod = load(sys.argv[1])
    params = json.loads(sys.argv[2])
    client = mod.Client()
    await client.open()
    try:
        out = await scenario(mod, client, params)
    finally:
        await client.close()
    emit({"result": out})


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
