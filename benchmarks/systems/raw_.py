"""The raw ceiling: redis-py + hiredis, no framework.

Enqueue is XADD (pipelined for the batch); the worker is
``XREADGROUP COUNT 500`` -> no-op (for ``io`` messages: one INCR each, run
concurrently through their own client, ``base.incr``) -> one pipeline of ``XACK`` + a result ``SET``
per message. No envelope, no argument decoding, no recovery: what Redis and the
client library cost, and nothing else. Runs in the project venv (redis 5+, hiredis).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from benchmarks.systems import base

PACKAGES: list[str] | None = None
BATCH = True
MULTIPROC = True
RECOVERY = False
SKIP = {"C", "D", "M"}  # no sleep task, no result API: enqueue and drain only
AVAILABLE = base.available("redis")
STREAM = f"{base.PREFIX}:raw:stream"
GROUP = "workers"


def worker_cmd(python: str, workers: int, concurrency: int) -> list[str]:
    return [python, "-m", "benchmarks.systems.raw_", str(workers)]


def result_key(job_id: str) -> str:
    return f"{base.PREFIX}:raw:result:{job_id}"


if AVAILABLE:
    import redis.asyncio as aredis
    from redis.exceptions import ResponseError

    class Client(base.Client):
        async def open(self) -> None:
            self.redis = aredis.Redis.from_url(base.REDIS_URL)
            self.window = base.KeyWindow(self.redis, result_key)

        async def close(self) -> None:
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            job_id = uuid.uuid4().hex
            await self.redis.xadd(STREAM, {"id": job_id, "t": task})
            return job_id

        async def enqueue_many(self, task: str, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
            ids = [uuid.uuid4().hex for _ in calls]
            for i in range(0, len(ids), 1000):
                pipe = self.redis.pipeline(transaction=False)
                for job_id in ids[i : i + 1000]:
                    pipe.xadd(STREAM, {"id": job_id, "t": task})
                await pipe.execute()
            return ids

        async def remaining(self, handles: Sequence[Any]) -> int:
            return await self.window.remaining(handles)

    async def work(consumer: str) -> None:
        r = aredis.Redis.from_url(base.REDIS_URL)
        try:
            await r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except ResponseError:
            pass  # BUSYGROUP: another process made it
        while True:
            reply = await r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=500, block=1000)
            if not reply:
                continue
            entries = reply[0][1]
            # "io" messages: each runs its INCR concurrently, through the task's own client
            io = [base.incr() for _, fields in entries if fields.get(b"t") == b"io"]
            if io:
                await asyncio.gather(*io)
            pipe = r.pipeline(transaction=False)
            pipe.xack(STREAM, GROUP, *[eid for eid, _ in entries])
            for _, fields in entries:
                pipe.set(result_key(fields[b"id"].decode()), b"null", ex=3600)
            await pipe.execute()

    def _child() -> None:
        import uvloop

        uvloop.run(work(f"raw-{os.getpid()}"))

    if __name__ == "__main__":
        import multiprocessing

        n = int(sys.argv[1])
        if n == 1:
            _child()
        procs = [multiprocessing.Process(target=_child) for _ in range(n if n > 1 else 0)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
