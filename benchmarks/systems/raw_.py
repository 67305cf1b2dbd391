"""The raw ceiling: redis-py + hiredis, no framework.

Enqueue is XADD (pipelined for the batch); the worker is
``XREADGROUP COUNT 500`` -> no-op (for ``io`` messages: one INCR each, run
concurrently through their own client, ``base.incr``; for ``io_shared`` ones the
same through one client the worker opened at start, ``base.open_client``) -> one
pipeline of ``XACK`` + a result ``SET`` per message (+ a ``PUBLISH`` of the job
id on the sender's reply channel, for messages that name one). No envelope, no
argument decoding, no recovery: what Redis and the client library cost, and
nothing else. Runs in the project venv (redis 5+, hiredis).

Round trip (D): the client subscribes once to its own reply channel and names it
in every message; a waiter is woken by the worker's PUBLISH of its job id. That is
the floor: XADD, XREADGROUP, one write pipeline, one pub/sub message.
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
SKIP = {"C", "M"}  # no sleep task, one queue
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

            self.reply = f"{base.PREFIX}:raw:reply:{uuid.uuid4().hex}"
            self.waiting: dict[bytes, asyncio.Future[None]] = {}
            self.pubsub: Any = None
            self.listener: asyncio.Task[None] | None = None

        async def close(self) -> None:
            if self.listener is not None:
                self.listener.cancel()
                await asyncio.wait([self.listener])
            if self.pubsub is not None:
                await self.pubsub.aclose()
            await self.redis.aclose()

        async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
            job_id = uuid.uuid4().hex
            fields = {"id": job_id, "t": task}
            if self.pubsub is not None:  # a round trip (D): name the reply channel
                self.waiting[job_id.encode()] = asyncio.get_running_loop().create_future()
                fields["r"] = self.reply
            await self.redis.xadd(STREAM, fields)
            return job_id

        async def result(self, handle: Any, timeout: float) -> Any:
            fut = self.waiting.get(handle.encode())
            if fut is not None:
                try:
                    await asyncio.wait_for(fut, timeout)
                finally:
                    self.waiting.pop(handle.encode(), None)
                return None
            # Sent before the first result() (the driver's warm-up): poll its key
            # once, and subscribe, so every later send names the reply channel.
            if self.pubsub is None:
                self.pubsub = self.redis.pubsub()
                await self.pubsub.subscribe(self.reply)
                self.listener = asyncio.create_task(self._listen())
            async with asyncio.timeout(timeout):
                while not await self.redis.exists(result_key(handle)):
                    await asyncio.sleep(0.001)
            return None

        async def _listen(self) -> None:
            async for message in self.pubsub.listen():
                if message["type"] == "message":
                    fut = self.waiting.get(message["data"])
                    if fut is not None and not fut.done():
                        fut.set_result(None)

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
        shared = base.open_client()  # the io_shared tasks' client (B_io_shared)
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
            io += [
                shared.incr(base.IO_KEY)
                for _, fields in entries
                if fields.get(b"t") == b"io_shared"
            ]
            if io:
                await asyncio.gather(*io)
            pipe = r.pipeline(transaction=False)
            pipe.xack(STREAM, GROUP, *[eid for eid, _ in entries])
            for _, fields in entries:
                pipe.set(result_key(fields[b"id"].decode()), b"null", ex=3600)
                if b"r" in fields:
                    pipe.publish(fields[b"r"], fields[b"id"])
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
