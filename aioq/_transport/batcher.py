"""Auto-batching: concurrent single commands share one pipeline round trip.

Every caller awaits its own reply, but commands issued while a pipeline is in
flight wait for the next one together. One lone caller still pays exactly one
round trip; N concurrent callers (a web app's requests, ``gather`` of many
``kiq()`` or ``result()`` calls) pay a handful instead of N, and hold one
connection instead of N.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from redis import exceptions as rex

from .cluster import execute_pipeline
from .connection import OPERATION_TIMEOUT, bounded

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

MAX_BATCH = 1000

Command = tuple[Any, ...]


class Batcher:
    def __init__(self, redis: Redis, timeout: float = OPERATION_TIMEOUT) -> None:
        self._redis = redis
        self._timeout = timeout
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, *command: Any) -> Any:
        """Run one raw command (e.g. ``"XADD", key, "*", "m", payload``); returns its reply."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def call_many(self, commands: Sequence[Command]) -> list[Any]:
        """Run a few commands, in this order and next to each other in the next
        pipeline (a record before its message); returns every reply, an error
        reply as its exception (the caller reads each one)."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._pending.extend(zip(commands, futures, strict=True))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        replies: list[Any] = []
        for fut in futures:
            try:
                replies.append(await fut)
            except Exception as exc:
                replies.append(exc)
        return replies

    async def pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """Run many commands in pipelined chunks of ``MAX_BATCH``, in order; returns
        every reply, an error reply as its exception (a pipeline is not a
        transaction: the commands after a failed one still ran)."""
        replies: list[Any] = []
        for start in range(0, len(commands), MAX_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for command in commands[start : start + MAX_BATCH]:
                pipe.execute_command(*command)
            async with bounded(self._timeout):
                replies.extend(await execute_pipeline(pipe, raise_on_error=False))
        return replies

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                commands = [command for command, _ in batch]
                try:
                    async with bounded(self._timeout):
                        try:
                            replies = await self._execute(commands)
                        except rex.ConnectionError:
                            # Most often a pooled connection that died with a Redis
                            # restart: one immediate retry gets a fresh one. (The
                            # first try may have landed: delivery is at-least-once.)
                            replies = await self._execute(commands)
                except Exception as exc:
                    replies = [exc] * len(batch)
                for (_, fut), reply in zip(batch, replies, strict=True):
                    if fut.done():
                        continue
                    if isinstance(reply, Exception):
                        fut.set_exception(reply)
                    else:
                        fut.set_result(reply)
        finally:
            self._flusher = None
            if self._pending:  # arrived while an error unwound the loop
                self._flusher = asyncio.create_task(self._flush())

    async def _execute(self, commands: list[Command]) -> list[Any]:
        if len(commands) == 1:
            return [await self._redis.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await execute_pipeline(pipe, raise_on_error=False)
        return replies
