"""The producer/awaiter side of the transport, as one object an ``App`` holds.

Creating it does no I/O. Its Redis client belongs to the event loop that
first uses it; a script that runs ``asyncio.run`` twice gets a fresh client
the second time instead of one bound to a closed loop.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import NoScriptError

from . import results
from .batcher import Batcher
from .connection import broker_errors, connect
from .keys import PAYLOAD_FIELD
from .scripts import SCRIPTS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from redis.asyncio import Redis

    from .keys import Keyspace


class _Bound:
    """Everything that belongs to one event loop."""

    def __init__(self, url: str, options: dict[str, Any], timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.redis = connect(url, **options)
        self.batcher = Batcher(self.redis, timeout)
        self.subs = results.Subscriptions(self.redis, timeout)

    async def aclose(self) -> None:
        await self.subs.aclose()
        await self.redis.aclose()


class Client:
    def __init__(self, url: str, keys: Keyspace, options: dict[str, Any], timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.keys = keys
        self._options = options
        self._bound: _Bound | None = None

    def _get(self) -> _Bound:
        bound = self._bound
        if bound is None or bound.loop is not asyncio.get_running_loop():
            bound = self._bound = _Bound(self.url, self._options, self.timeout)
        return bound

    @property
    def redis(self) -> Redis:
        return self._get().redis

    async def enqueue(self, queue: str, payload: bytes, level: int = 0) -> None:
        async with broker_errors(self.url):
            await self._get().batcher.call(
                "XADD", self.keys.stream(queue, level), "*", PAYLOAD_FIELD, payload
            )

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One script call through the batcher (shares its round trips)."""
        batcher = self._get().batcher
        sha = SCRIPTS[name].sha
        try:
            return await batcher.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await SCRIPTS.load_all(self._get().redis)
            return await batcher.call("EVALSHA", sha, len(keys), *keys, *args)

    async def enqueue_unique(
        self,
        queue: str,
        level: int,
        lock: str,
        job_id: str,
        task: str,
        payload: bytes,
        due_ms: int | None,
        lock_ttl_ms: int,
        result_ttl: float,
    ) -> str:
        """Send unless the lock is held; returns the id of the job that holds it."""
        target = (
            self.keys.stream(queue, level) if due_ms is None else self.keys.delayed(queue, level)
        )
        async with broker_errors(self.url):
            sent, holder = await self._script(
                "enqueue_unique",
                [self.keys.unique(queue, lock), target],
                [job_id, max(1, lock_ttl_ms), payload, "" if due_ms is None else due_ms],
            )
            if sent and due_ms is not None:
                ttl_ms = lock_ttl_ms + int(result_ttl * 1000)
                await self._script(
                    "mark_scheduled", [self.keys.job(job_id)], [task, queue, due_ms, ttl_ms]
                )
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    async def schedule(
        self,
        queue: str,
        job_id: str,
        task: str,
        payload: bytes,
        due_ms: int,
        ttl_ms: int,
        level: int = 0,
    ) -> None:
        """Put a message in the queue's delayed set, with a ``scheduled`` record.

        The record is written first, in the same pipeline: the message cannot be
        started before its record exists, so ``running`` is never overwritten.
        """
        batcher = self._get().batcher
        record = self.keys.job(job_id)
        async with broker_errors(self.url):
            await asyncio.gather(
                batcher.call(
                    "HSET",
                    record,
                    "state",
                    "scheduled",
                    "task",
                    task,
                    "queue",
                    queue,
                    "due_ms",
                    due_ms,
                ),
                batcher.call("PEXPIRE", record, ttl_ms),
                batcher.call("ZADD", self.keys.delayed(queue, level), due_ms, payload),
            )

    async def enqueue_many(self, items: Sequence[tuple[str, int, bytes]]) -> None:
        """XADD each (queue, priority level, payload), in pipelined chunks."""
        async with broker_errors(self.url):
            await self._get().batcher.pipeline(
                [("XADD", self.keys.stream(q, lv), "*", PAYLOAD_FIELD, p) for q, lv, p in items]
            )

    async def wait_outcome(self, job_id: str, timeout: float | None) -> bytes:
        bound = self._get()
        async with broker_errors(self.url):
            return await results.wait_outcome(
                bound.batcher, self.keys, bound.subs, job_id, timeout, self.timeout
            )

    async def abort(self, job_id: str, outcome: bytes, now_ms: int, ttl_ms: int) -> bool:
        """End the job as aborted unless it already ended; True if it was aborted."""
        bound = self._get()
        async with broker_errors(self.url):
            done = await SCRIPTS.call(
                bound.redis,
                "abort",
                [self.keys.job(job_id)],
                [
                    outcome,
                    now_ms,
                    ttl_ms,
                    self.keys.done_channel(job_id),
                    self.keys.abort_channel(),
                    job_id,
                ],
            )
        return bool(done)

    async def report_progress(self, job_id: str, payload: bytes) -> None:
        batcher = self._get().batcher
        async with broker_errors(self.url):
            await asyncio.gather(
                batcher.call("HSET", self.keys.job(job_id), "progress", payload),
                batcher.call("PUBLISH", self.keys.progress_channel(job_id), payload),
            )

    async def watch(self, job_id: str) -> AsyncIterator[tuple[str, Any]]:
        bound = self._get()
        async with broker_errors(self.url):
            async for event in results.watch(bound.batcher, self.keys, bound.subs, job_id):
                yield event

    async def job_state(self, job_id: str) -> bytes | None:
        async with broker_errors(self.url):
            state = await self._get().batcher.call("HGET", self.keys.job(job_id), "state")
            return cast("bytes | None", state)

    async def job_record(self, job_id: str) -> dict[bytes, bytes]:
        async with broker_errors(self.url):
            return await results.read_record(self._get().batcher, self.keys, job_id)

    async def ping(self) -> None:
        async with broker_errors(self.url):
            await self._get().redis.ping()

    async def aclose(self) -> None:
        bound, self._bound = self._bound, None
        if bound is not None and bound.loop is asyncio.get_running_loop():
            await bound.aclose()
