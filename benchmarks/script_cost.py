"""Redis CPU of a worker's per-job scripts alone: start and complete, in batches.

    python benchmarks/script_cost.py redis://127.0.0.1:6379/0 [N] [BATCH] [REPS]

A drain (``redis_cpu.py``) measures everything a task costs Redis, and on a
shared machine it swings by ±20 % from run to run: too much to see a change of a
few µs. This measures only what the worker's scripts cost, in a tight loop, with
nothing idle in between: N jobs are sent as ``kiq`` sends them (record HSET +
XADD), read by one consumer (XREADGROUP COUNT 500), then started (``start_many``)
and completed (``complete``: outcome, ack, delete) BATCH at a time, through the
worker's own transport (``Streams.start`` / ``Streams.complete``). Prints the
Redis CPU (INFO ``used_cpu_user + used_cpu_sys``) per job of the starts and of
the completions, the lowest of REPS runs. One Redis server only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import redis.asyncio as aredis

from aioq._transport.keys import GROUP, PAYLOAD_FIELD, Keyspace
from aioq._transport.scripts import SCRIPTS
from aioq._transport.streams import Streams
from aioq._transport.types import Completion, Entry, Finish, Start

PAYLOAD = b"\x00" * 120  # about a no-op's envelope
OUTCOME = b"\x92\x01\xc0"


CALLGRIND = os.environ.get("AIOQ_CALLGRIND_PID")


def _callgrind(*args: str) -> None:
    if CALLGRIND:
        subprocess.run(["callgrind_control", *args, CALLGRIND], check=True, capture_output=True)


async def _cpu(r: aredis.Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def once(url: str, n: int, batch: int) -> tuple[float, float]:
    r = aredis.Redis.from_url(url)
    keys = Keyspace(f"sc-{uuid.uuid4().hex[:8]}")
    streams = Streams(r, keys, cluster=False)
    await SCRIPTS.load_all(r)
    stream = keys.stream("default")
    now = int(time.time() * 1000)
    ids = [uuid.uuid4().hex for _ in range(n)]
    for i in range(0, n, 500):
        pipe = r.pipeline(transaction=False)
        for job_id in ids[i : i + 500]:
            pipe.hset(
                keys.job(job_id),
                mapping={
                    "state": "queued",
                    "task": "noop",
                    "queue": "default",
                    "enqueued_ms": now,
                    "result_ttl_ms": 86_400_000,
                },
            )
            pipe.xadd(stream, {PAYLOAD_FIELD: PAYLOAD})
        await pipe.execute()
    await streams.ensure_group("default")
    entries: list[Entry] = []
    while len(entries) < n:
        reply = await r.xreadgroup(GROUP, "w1", {stream: ">"}, count=500)
        entries += [Entry(stream, "default", 0, eid, PAYLOAD) for eid, _ in reply[0][1]]
    starting = start_cpu = complete_cpu = 0.0
    for i in range(0, n, batch):
        chunk = list(zip(ids[i : i + batch], entries[i : i + batch], strict=True))
        starting = await _cpu(r)
        _callgrind("-i", "on")
        started = await streams.start(
            "w1", now, [Start(job_id, "noop", "default", now) for job_id, _ in chunk]
        )
        _callgrind("-d")
        _callgrind("-i", "off")
        middle = await _cpu(r)
        _callgrind("-i", "on")
        done = await streams.complete(
            "w1",
            [
                Completion(e, Finish(job_id, int(a), "succeeded", OUTCOME, now, 86_400_000))
                for (job_id, e), a in zip(chunk, started, strict=True)
            ],
        )
        _callgrind("-d")
        _callgrind("-i", "off")
        end = await _cpu(r)
        assert all(not isinstance(d, Exception) and d.acked for d in done), done[:3]
        start_cpu += middle - starting
        complete_cpu += end - middle
    assert await r.xlen(stream) == 0
    await r.aclose()
    return start_cpu * 1e6 / n, complete_cpu * 1e6 / n


async def main(url: str, n: int, batch: int, reps: int) -> None:
    runs = [await once(url, n, batch) for _ in range(reps)]
    start = min(s for s, _ in runs)
    complete = min(c for _, c in runs)
    print(
        f"{n} jobs, batches of {batch}: start {start:.2f} µs/job, complete {complete:.2f} µs/job "
        f"(lowest of {reps}; every run: {', '.join(f'{s:.1f}+{c:.1f}' for s, c in runs)})"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            args[0],
            int(args[1]) if len(args) > 1 else 20_000,
            int(args[2]) if len(args) > 2 else 100,
            int(args[3]) if len(args) > 3 else 5,
        )
    )
