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

from .connection import OPERATION_TIMEOUT, bounded
from .lanes import Lanes

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

MAX_BATCH = 1000

Command = tuple[Any, ...]


class Batcher:
    def __init__(self, redis: Redis, timeout: float = OPERATION_TIMEOUT) -> None:
        self._lanes = Lanes(redis)
        self._timeout = timeout
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """Its loop, from the first call on (a batcher serves one loop: ``client.py``
        makes one per loop). Saves a ``get_running_loop()`` per call, a ``getpid``
        system call on Python 3.11."""

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return loop

    async def call(self, *command: Any) -> Any:
        """Run one raw command (e.g. ``"XADD", key, "*", "m", payload``); returns its reply."""
        fut: asyncio.Future[Any] = (self._loop or asyncio.get_running_loop()).create_future()
        self._pending.append((command, fut))
        self._start()
        return await fut

    async def call_many(self, commands: Sequence[Command]) -> list[Any]:
        """Run a few commands, in this order and next to each other in the next
        pipeline (a record before its message); returns every reply, an error
        reply as its exception (the caller reads each one)."""
        loop = self._loop or asyncio.get_running_loop()
        futures = [loop.create_future() for _ in commands]
        self._pending.extend(zip(commands, futures, strict=True))
        self._start()
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
            async with bounded(self._timeout):
                replies.extend(await self._lanes.run(commands[start : start + MAX_BATCH]))
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
                            # restart: one immediate retry gets a fresh one. But the
                            # first try may have been applied before the connection
                            # broke, and a message added twice is a job run twice:
                            # a batch that adds one is not sent again (its callers
                            # get the error: kiq() raises BrokerUnavailable).
                            if any(command[0] == "XADD" for command in commands):
                                raise
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
                self._start()

    async def _execute(self, commands: list[Command]) -> list[Any]:
        # One flush at a time: it usually finds its connection idle in the lanes.
        return await self._lanes.run(commands)
