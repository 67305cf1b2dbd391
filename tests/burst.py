"""A fresh client process that fires a burst of ``kiq()`` + ``result(timeout=…)``
calls within its first half second (the issue-10 race), then reports.

    python -m tests.burst CALLS TIMEOUT
    python -m aioq worker tests.burst:app      # a worker for it

Environment: ``AIOQ_REDIS_URL``, ``AIOQ_TEST_PREFIX``, and ``AIOQ_BURST_NAME`` (the
Redis client name of this process' connections, so the test can count its
pub/sub connections). Prints one JSON line: how many ``result()`` calls returned
the right value, raised ``ResultTimeout`` (and the job's state just after:
``timeout_states``), raised something else (``errors``, with refused ``kiq()``
calls), or had not returned after ``TIMEOUT + 5`` s (``hung``);
the slowest ``result()`` call's seconds; the most pub/sub connections this process
held at once; the ids of the jobs sent. Exits with ``os._exit`` so a wedged client
cannot hang the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

import redis.asyncio as aredis

import aioq

NAME = os.environ.get("AIOQ_BURST_NAME", f"burst-{os.getpid()}")

app = aioq.App(
    prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-burst"),
    visibility_timeout=float(os.environ.get("AIOQ_TEST_VT", "60")),
    client_name=NAME,
)


@app.task(name="burst.echo")
async def echo(x: int) -> int:
    return x


async def call(i: int, timeout: float, spent: list[float], sent: list[str]) -> str:
    await asyncio.sleep(random.uniform(0, 0.3))  # requests arriving, as in a web app
    try:
        job = await asyncio.wait_for(echo.kiq(i), 20)
    except TimeoutError:
        return "kiq hung"
    except Exception as exc:  # reported (a Redis restart may refuse a kiq)
        return f"kiq error: {type(exc).__name__}"
    sent.append(job.id)
    start = time.monotonic()
    try:
        value = await asyncio.wait_for(job.result(timeout=timeout), timeout + 5)
    except aioq.ResultTimeout:
        # The job's state right after: "succeeded" here would mean a lost wake-up.
        try:
            state = await asyncio.wait_for(job.state(), 5)
        except Exception:  # Redis restarting
            return "timeout:unknown"
        return f"timeout:{state.value}"
    except TimeoutError:
        return "hung"
    except Exception as exc:  # reported: the test fails on it
        return f"error: {type(exc).__name__}: {exc}"
    finally:
        spent.append(time.monotonic() - start)
    return "ok" if value == i else f"wrong: {value!r}"


async def count_pubsub(peak: list[int], stop: asyncio.Event) -> None:
    admin = aredis.Redis.from_url(app.url, client_name=f"{NAME}-admin")
    try:
        while not stop.is_set():
            try:
                clients = await admin.client_list(_type="pubsub")
            except (aredis.ConnectionError, OSError):  # Redis restarting
                clients = []
            peak[0] = max(peak[0], sum(1 for c in clients if c.get("name") == NAME))
            await asyncio.sleep(0.02)
    finally:
        await admin.aclose()


async def main(calls: int, timeout: float) -> None:
    spent: list[float] = []
    sent: list[str] = []
    peak = [0]
    stop = asyncio.Event()
    counter = asyncio.create_task(count_pubsub(peak, stop))
    outcomes = await asyncio.gather(*(call(i, timeout, spent, sent) for i in range(calls)))
    stop.set()
    await counter
    report = {
        "ok": outcomes.count("ok"),
        "timeout": sum(1 for o in outcomes if o.startswith("timeout:")),
        "timeout_states": sorted(o.split(":")[1] for o in outcomes if o.startswith("timeout:")),
        "hung": sum(1 for o in outcomes if o.endswith("hung")),
        "errors": sorted(
            {o for o in outcomes if not (o == "ok" or o.startswith("timeout:") or "hung" in o)}
        ),
        "slowest": max(spent, default=0.0),
        "pubsub_peak": peak[0],
        "jobs": sent,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    loop = asyncio.new_event_loop()
    loop.run_until_complete(main(int(sys.argv[1]), float(sys.argv[2])))
    os._exit(0)  # never wait for a wedged client's tasks or connections
