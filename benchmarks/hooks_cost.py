"""What hooks cost: sending N no-op jobs one by one (32 concurrent callers) and
draining them with an in-process worker (concurrency 100), with no hook, then
with one no-op ``before_enqueue`` hook and one no-op ``middleware``. Rounds
alternate between the two; the best of ``--reps`` is printed, with the ratio.

    python scripts/with_redis.py -- .venv/bin/python benchmarks/hooks_cost.py

``--micro`` measures the same two paths without Redis, where its noise cannot
hide a microsecond: ``kiq()`` against a transport that writes nothing, and
``run_attempt`` (one attempt of a no-op task, as the worker runs it); best of 5
rounds of 50,000 each.

Run it with ``PYTHONPATH`` pointing at an older checkout (one without hooks) to
compare "hooks unused" with "no hooks code at all": it then measures only the
first mode. It FLUSHALLs the Redis it is given: only point it at a private one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import redis

import aioq
from aioq.testing.worker import running_worker

URL = os.environ.get("AIOQ_REDIS_URL", "redis://127.0.0.1:1/0")


def make_app(hooked: bool) -> tuple[aioq.App, Any]:
    app = aioq.App(URL, prefix="hookcost")

    @app.task(name="noop")
    async def noop() -> None:
        return None

    if hooked:

        @app.before_enqueue
        def tag(call: aioq.Enqueue) -> None:
            return None

        @app.middleware
        async def around(ctx: aioq.Context, call_next: Any) -> Any:
            return await call_next()

    return app, noop


async def one_round(hooked: bool, n: int) -> tuple[float, float, float, float]:
    """(enqueue wall, enqueue CPU, drain wall, drain CPU) in seconds."""
    redis.Redis.from_url(URL).flushall()
    app, noop = make_app(hooked)
    await noop.kiq()  # scripts loaded, connections open
    t0, c0 = time.perf_counter(), time.process_time()

    async def caller() -> None:
        for _ in range(n // 32):
            await noop.kiq()

    await asyncio.gather(*(caller() for _ in range(32)))
    enqueue = time.perf_counter() - t0, time.process_time() - c0
    async with running_worker(app, concurrency=100) as worker:
        t0, c0 = time.perf_counter(), time.process_time()
        await worker.drain(timeout=300)
        drain = time.perf_counter() - t0, time.process_time() - c0
    await app.aclose()
    return (*enqueue, *drain)


class NoWrites:
    """Stands in for the app's Redis client: a send costs only aioq's own CPU."""

    async def enqueue(self, job: Any) -> None:
        return None


async def micro(hooked: bool, n: int) -> tuple[float, float]:
    """(µs per kiq(), µs per run_attempt()) without Redis."""
    import anyio

    from aioq._core.message import decode_message, new_message
    from aioq._worker.executor import run_attempt

    app, noop = make_app(hooked)
    app._transport = NoWrites()  # type: ignore[assignment]
    t0 = time.perf_counter()
    for _ in range(n):
        await noop.kiq()
    send = (time.perf_counter() - t0) / n * 1e6
    _, payload = new_message("noop", "default", [], {}, max_bytes=1 << 20)
    msg = decode_message(payload)
    task, opts, threads = noop.definition, app.options_for("noop"), anyio.CapacityLimiter(1)
    extra = (app.hooks.middleware,) if hasattr(app, "hooks") else ()
    ctx = None
    if hooked:
        ctx = aioq.Context(
            app=app, job_id=msg.id, task_name="noop", queue="default", attempt=1, worker_id="w"
        )
    t0 = time.perf_counter()
    for _ in range(n):
        await run_attempt(task, msg, ctx, opts, threads, *extra)
    return send, (time.perf_counter() - t0) / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--micro", action="store_true")
    args = parser.parse_args()
    modes = [False, True] if hasattr(aioq.App, "middleware") else [False]
    if args.micro:
        found: dict[bool, tuple[float, float]] = {}
        for _ in range(args.reps):
            for hooked in modes:
                row = await micro(hooked, 50_000)
                prev = found.get(hooked, row)
                found[hooked] = (min(prev[0], row[0]), min(prev[1], row[1]))
        for hooked, (send, attempt) in found.items():
            label = "one no-op hook each" if hooked else "no hooks"
            print(f"{label:20}  kiq() {send:6.2f} us   run_attempt() {attempt:6.2f} us")
        return
    best: dict[bool, list[float]] = {}
    for _ in range(args.reps):
        for hooked in modes:
            row = await one_round(hooked, args.n)
            prev = best.get(hooked)
            best[hooked] = (
                list(row) if prev is None else [min(a, b) for a, b in zip(prev, row, strict=True)]
            )
    n = args.n
    for hooked, (ew, ec, dw, dc) in best.items():
        label = "one no-op hook each" if hooked else "no hooks"
        print(
            f"{label:20}  enqueue {n / ew:8,.0f}/s ({ec / n * 1e6:5.1f} us CPU each)"
            f"  drain {n / dw:8,.0f}/s ({dc / n * 1e6:5.1f} us CPU each)"
        )
    if len(best) == 2:
        off, on = best[False], best[True]
        print(
            f"hooked / unhooked rate: enqueue {off[0] / on[0]:.2f}, drain {off[2] / on[2]:.2f}"
            f"; CPU per job: enqueue {on[1] / off[1]:.2f}x, drain {on[3] / off[3]:.2f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
