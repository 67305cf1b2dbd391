"""Pipelines on kept connections: the hot paths' way around redis-py's overhead.

A redis-py 8 pipeline pays for a ``Pipeline`` object, a pool checkout (a lock, a
condition, a non-blocking read to check the socket, observability hooks), a retry
wrapper and a reset, on every call: measured on this project's 2-core machine,
about twice the client CPU of the round trip itself. ``Lanes`` keeps the
connections it took from the pool and runs raw commands on an idle one: pack
(hiredis), one write, read every reply. Used where replies are taken raw (no
redis-py response callbacks): the client's ``Batcher`` and the worker's start,
complete and ack scripts.

A connection whose exchange failed or was interrupted (an error, a timeout, a
cancellation) may still owe replies: it is disconnected and given back to the
pool, never reused as it is. ``aclose`` of the Redis client (its pool) closes the
kept connections too: the pool counts them as in use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

Command = tuple[Any, ...]


class Lanes:
    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._idle: list[AbstractConnection] = []

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` in order in one round trip; returns every reply, an
        error reply as its exception. Raises when the exchange itself fails."""
        if self._idle:
            conn = self._idle.pop()
        else:
            conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            try:
                await conn.disconnect(nowait=True)
            finally:
                await self._pool.release(conn)
            raise
        self._idle.append(conn)
        return replies
