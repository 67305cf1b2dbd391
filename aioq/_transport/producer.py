"""Enqueueing: XADD, with concurrent calls coalesced into shared pipelines.

Every ``kiq()`` awaits its own XADD reply, but calls made while a pipeline is
in flight wait for the next one together, so N concurrent producers pay far
fewer than N round trips (auto-batching). A single caller still pays exactly
one round trip.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .keys import PAYLOAD_FIELD

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

MAX_BATCH = 1000


class Producer:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def add(self, stream: str, payload: bytes) -> None:
        """Append one message to ``stream``; returns once Redis has it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, payload, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await fut

    async def add_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Append many messages in pipelined chunks; returns once Redis has them all."""
        for start in range(0, len(items), MAX_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for stream, payload in items[start : start + MAX_BATCH]:
                pipe.xadd(stream, {PAYLOAD_FIELD: payload})
            await pipe.execute()

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    if len(batch) == 1:
                        stream, payload, _ = batch[0]
                        await self._redis.xadd(stream, {PAYLOAD_FIELD: payload})
                    else:
                        await self.add_many([(s, p) for s, p, _ in batch])
                except BaseException as exc:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(
                                exc
                                if isinstance(exc, Exception)
                                else ConnectionError("enqueue cancelled")
                            )
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._flusher = None
            if self._pending:  # arrived while we were unwinding after an error
                self._flusher = asyncio.create_task(self._flush())
