"""Job records and awaiting outcomes without polling.

A waiter subscribes to the job's ``done`` channel (one shared pub/sub
connection per client for every waiter), *then* reads the record: an outcome
published between the two is caught by the subscription, one published
before is in the record, so no wake-up is lost. Pub/sub is at-most-once, so
after every reconnect, and on a slow timer, waiters read the record again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

from .connection import CONNECTION_ERRORS

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import Connection

    from .keys import Keyspace

log = logging.getLogger("aioq")

RECHECK_INTERVAL = 5.0
"""Seconds between record reads while waiting, to cover a lost notification."""


async def read_outcome(redis: Redis, keys: Keyspace, job_id: str) -> bytes | None:
    return cast("bytes | None", await redis.hget(keys.job(job_id), "outcome"))


async def read_record(redis: Redis, keys: Keyspace, job_id: str) -> dict[bytes, bytes]:
    return cast("dict[bytes, bytes]", await redis.hgetall(keys.job(job_id)))


class Waiter:
    """One awaiting caller: woken by its job's notification, or by a reconnect."""

    __slots__ = ("channel", "event", "payload")

    def __init__(self, channel: bytes) -> None:
        self.channel = channel
        self.event = asyncio.Event()
        self.payload: bytes | None = None


class Subscriptions:
    """One pub/sub connection shared by every waiter of a client."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._conn: Connection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._waiters: dict[bytes, set[Waiter]] = {}
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        self._to_subscribe: set[bytes] = set()
        self._flush_scheduled = False

    async def subscribe(self, channel: str) -> Waiter:
        """Register a waiter on ``channel``; returns once Redis confirmed the subscription.

        Concurrent subscriptions made in one loop tick share one SUBSCRIBE.
        """
        key = channel.encode()
        loop = asyncio.get_running_loop()
        waiter = Waiter(key)
        waiters = self._waiters.setdefault(key, set())
        waiters.add(waiter)
        if len(waiters) == 1 and key not in self._confirm:
            self._confirm[key] = loop.create_future()
            self._to_subscribe.add(key)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(lambda: asyncio.ensure_future(self._send_subscribes()))
        confirm = self._confirm.get(key)
        if confirm is not None:
            try:
                await asyncio.shield(confirm)
            except BaseException:
                self.discard(waiter)
                raise
        return waiter

    def discard(self, waiter: Waiter) -> None:
        """Remove a waiter; its channel is unsubscribed when it has none left."""
        key = waiter.channel
        waiters = self._waiters.get(key)
        if waiters is None:
            return
        waiters.discard(waiter)
        if not waiters:
            del self._waiters[key]
            self._to_subscribe.discard(key)
            if key not in self._confirm and self._conn is not None and self._connected.is_set():
                asyncio.ensure_future(self._unsubscribe(key))

    async def _unsubscribe(self, key: bytes) -> None:
        with contextlib.suppress(*CONNECTION_ERRORS):
            if self._conn is not None and key not in self._waiters:
                await self._conn.send_command("UNSUBSCRIBE", key, check_health=False)

    async def _send_subscribes(self) -> None:
        self._flush_scheduled = False
        try:
            await self._ensure_reader()
            channels, self._to_subscribe = self._to_subscribe, set()
            if channels and self._conn is not None:
                await self._conn.send_command("SUBSCRIBE", *channels, check_health=False)
        except Exception as exc:
            for key in list(self._confirm):
                fut = self._confirm.pop(key)
                if not fut.done():
                    fut.set_exception(exc)

    async def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._run())
        if not self._connected.is_set():
            ready = asyncio.ensure_future(self._connected.wait())
            done, _ = await asyncio.wait({ready, self._reader}, return_when=asyncio.FIRST_COMPLETED)
            if ready not in done:
                ready.cancel()
                self._reader.result()  # re-raise why the reader ended

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            conn = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()
            except CONNECTION_ERRORS as exc:
                if first:
                    raise
                log.warning("pub/sub connection lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            self._conn = conn
            try:
                if not first and self._waiters:
                    # Reconnected: restore every subscription, then wake every
                    # waiter so it re-reads its record (messages sent while we
                    # were away are lost: pub/sub is at-most-once).
                    await conn.send_command("SUBSCRIBE", *self._waiters, check_health=False)
                    self._wake_all()
                first = False
                self._connected.set()
                await self._read_loop(conn)
            except CONNECTION_ERRORS as exc:
                log.warning("pub/sub connection lost (%s); reconnecting", exc)
            finally:
                self._connected.clear()
                self._conn = None
                with contextlib.suppress(Exception):
                    await conn.disconnect()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    async def _read_loop(self, conn: Connection) -> None:
        while True:
            msg = await conn.read_response(timeout=None)
            if not isinstance(msg, list) or len(msg) < 3:
                continue
            kind, channel = msg[0], msg[1]
            if kind == b"message":
                for waiter in self._waiters.get(channel, ()):
                    waiter.payload = msg[2]
                    waiter.event.set()
            elif kind == b"subscribe":
                confirm = self._confirm.pop(channel, None)
                if confirm is not None and not confirm.done():
                    confirm.set_result(None)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            self._reader = None
        for fut in self._confirm.values():
            fut.cancel()
        self._confirm.clear()
        self._waiters.clear()


async def wait_outcome(
    redis: Redis, keys: Keyspace, subs: Subscriptions, job_id: str, timeout: float | None
) -> bytes:
    """The job's outcome payload, as soon as it exists.

    Raises ``TimeoutError`` when ``timeout`` seconds pass first.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    waiter = await subs.subscribe(keys.done_channel(job_id))
    try:
        while True:
            # Subscribed first, read second: no outcome can slip between the two.
            outcome = await read_outcome(redis, keys, job_id)
            if outcome is not None:
                return outcome
            while True:
                wait = RECHECK_INTERVAL
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        raise TimeoutError(job_id)
                try:
                    await asyncio.wait_for(waiter.event.wait(), wait)
                except TimeoutError:
                    break  # slow re-check of the record
                if waiter.payload is not None:
                    return waiter.payload
                waiter.event.clear()  # woken by a reconnect: re-check the record
                break
    finally:
        subs.discard(waiter)
