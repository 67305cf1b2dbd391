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
kept connections too: the pool counts them as in use. On Sentinel, a kept
connection to a node the sentinels no longer name as master is reopened before
use (``sentinel.moved``), as the pool does for the connections it hands out.

A cluster client has no pool (its nodes have one each, and a pipeline routes each
command by its keys): there ``Lanes`` runs the commands as a cluster pipeline,
with redis-py's response callbacks.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError, ResponseError

from . import sentinel
from .cluster import execute_pipeline

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

Command = tuple[Any, ...]


def _closed_by_server(conn: AbstractConnection) -> bool:
    """Whether the server closed (or reset) ``conn`` since it was last used: the
    event loop has fed its reader the end of the stream, or the error."""
    reader = getattr(conn, "_reader", None)
    return reader is not None and (reader.at_eof() or reader.exception() is not None)


class Lanes:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pool = getattr(redis, "connection_pool", None)
        self._sentinel = isinstance(self._pool, sentinel.BlockingSentinelPool)
        self._idle: list[AbstractConnection] = []

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` in order in one round trip; returns every reply, an
        error reply as its exception. Raises when the exchange itself fails."""
        if self._pool is None:
            return await self._pipeline(commands)
        if self._idle:
            conn = self._idle.pop()
            if _closed_by_server(conn):
                # Redis restarted, or killed the client, while the connection sat
                # here (the pool checks its own; ours skip it): a new one, before
                # anything is sent (the batcher never re-sends a message).
                await conn.disconnect(nowait=True)
        else:
            conn = await self._pool.get_connection()
        try:
            if self._sentinel and await sentinel.moved(self._pool, conn):
                # connect() asks the sentinels (a bare send would reconnect to
                # the address the connection had).
                await conn.disconnect()
                await conn.connect()  # type: ignore[no-untyped-call]
            if conn.health_check_interval and time.monotonic() > conn.next_health_check:
                await conn.check_health()  # type: ignore[no-untyped-call]  # PINGs an idle one
            # (checked here with the clock the loop's time() reads: redis-py's own
            # check asks get_running_loop(), a getpid system call on Python 3.11)
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            parser: Any = conn._parser
            try:
                # The parser itself: an error reply comes back as its exception.
                # ``conn.read_response`` per reply cost ~10 calls each (a host
                # string, a loop lookup: a getpid on Python 3.11) for nothing
                # here: no per-read timeout (``bounded`` times the whole call).
                replies: list[Any] = [await parser.read_response() for _ in commands]
            except OSError as exc:  # as conn.read_response reports it
                raise ConnectionError(f"Error while reading from Redis: {exc}") from exc
            if conn.health_check_interval:  # what conn.read_response would note
                conn.next_health_check = time.monotonic() + conn.health_check_interval
        except BaseException:
            try:
                await conn.disconnect(nowait=True)
            finally:
                await self._pool.release(conn)
            raise
        self._idle.append(conn)
        return replies

    async def _pipeline(self, commands: Sequence[Command]) -> list[Any]:
        """The cluster path: one command alone, or a non-transactional pipeline."""
        if len(commands) == 1:
            try:
                return [await self._redis.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                return [exc]
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies: list[Any] = await execute_pipeline(pipe, raise_on_error=False)
        return replies
