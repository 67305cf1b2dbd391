"""The delayed sets and the due index: moving due messages into their streams
(pump.lua), which queues need a pump (due.lua, rehint.lua), and lowering a
queue's hint when a message is put back.

Part of ``Streams`` (a base class of it): everything here needs the worker's
Redis client and key space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cluster import execute_pipeline
from .connection import bounded
from .scripts import SCRIPTS, run_pipeline

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from .keys import Keyspace

__all__ = ["Delays"]


class Delays:
    redis: Redis
    keys: Keyspace
    cluster: bool

    async def pump(self, queue: str, limit: int) -> tuple[int, int]:
        """Move delayed messages due by the Redis clock into the streams of their
        priority levels; returns (moved, ms until the next one is due by Redis
        time, or -1 when none waits)."""
        moved, wait_ms, _ = await SCRIPTS.call(self.redis, "pump", self._pump_keys(queue), [limit])
        return int(moved), int(wait_ms)

    def _pump_keys(self, queue: str) -> list[str]:
        return [*self.keys.level_delayed(queue), *self.keys.level_streams(queue)]

    async def with_delayed(self, queues: Sequence[str]) -> list[str]:
        """Those of ``queues`` that have a delayed set at any level (one multi-key
        EXISTS per queue, its keys in its slot; one pipeline). On one server, one
        EXISTS over all of them first: when none has any (a worker's start on 1,000
        queues without delayed work) that is the only command."""
        if not self.cluster and len(queues) > 1:
            keys = [k for q in queues for k in self.keys.level_delayed(q)]
            async with bounded():
                if not await self.redis.exists(*keys):
                    return []
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.execute_command("EXISTS", *self.keys.level_delayed(queue))
        async with bounded():
            counts = await execute_pipeline(pipe)
        return [q for q, n in zip(queues, counts, strict=True) if n]

    async def due_queues(self, limit: int, offset: int) -> tuple[int, int, list[str]]:
        """Queues the due index says need a pump now: (Redis now in ms, ms until the
        next later hint or -1, queues)."""
        async with bounded():
            reply = await SCRIPTS.call(self.redis, "due", [self.keys.due()], [limit, offset])
        return int(reply[0]), int(reply[1]), [q.decode() for q in reply[2:]]

    async def pump_hinted(self, queues: Sequence[str], held_ms: int, limit: int) -> list[int]:
        """Pump ``queues`` and reset their due-index hints: each hint is first held at
        ``held_ms`` (a pump that dies midway is retried then), then set to the
        queue's next due time, or removed when nothing waits — unless a sender
        lowered it meanwhile. Returns the messages moved per queue."""
        hint = self.keys.due()
        pumped = await self._hold_and_pump(queues, held_ms, limit)
        for reply in pumped:
            if isinstance(reply, Exception):
                raise reply

        def rehint(pipe: Pipeline) -> None:
            for queue, (_, _, next_due) in zip(queues, pumped, strict=True):
                SCRIPTS.queue(pipe, "rehint", [hint], [queue, held_ms, next_due])

        for reply in await run_pipeline(self.redis, rehint):
            if isinstance(reply, Exception):
                raise reply
        return [int(moved) for moved, _, _ in pumped]

    async def _hold_and_pump(self, queues: Sequence[str], held_ms: int, limit: int) -> list[Any]:
        """Hold each queue's hint at ``held_ms``, then pump it: pump.lua's replies."""
        hint = self.keys.due()
        cluster = self.cluster

        def hold(pipe: Pipeline) -> None:
            for queue in queues:
                pipe.zadd(hint, {queue: held_ms}, xx=True)
                if not cluster:  # one connection: Redis keeps the order
                    SCRIPTS.queue(pipe, "pump", self._pump_keys(queue), [limit])

        def pump(pipe: Pipeline) -> None:
            for queue in queues:
                SCRIPTS.queue(pipe, "pump", self._pump_keys(queue), [limit])

        replies = await run_pipeline(self.redis, hold)
        if not cluster:
            return replies[1::2]
        # The hint (a slot of its own) and the queues are on different nodes, which
        # one pipeline serves concurrently: the holds are confirmed first.
        return await run_pipeline(self.redis, pump)

    async def hint_due(self, queue: str, due_ms: int) -> None:
        """Lower ``queue``'s due-index hint to ``due_ms`` (a message was put back)."""
        async with bounded():
            await self.redis.zadd(self.keys.due(), {queue: due_ms}, lt=True)
