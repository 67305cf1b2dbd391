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
from typing import TYPE_CHECKING, Any, cast

from .connection import CONNECTION_ERRORS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from redis.asyncio import Redis

    from .batcher import Batcher
    from .keys import Keyspace

log = logging.getLogger("aioq")

RECHECK_INTERVAL = 5.0
"""Seconds between record reads while waiting, to cover a lost notification."""


async def read_outcome(batcher: Batcher, keys: Keyspace, job_id: str) -> bytes | None:
    return cast("bytes | None", await batcher.call("HGET", keys.job(job_id), "outcome"))


async def read_record(batcher: Batcher, keys: Keyspace, job_id: str) -> dict[bytes, bytes]:
    flat = await batcher.call("HGETALL", keys.job(job_id))
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Waiter:
    """One awaiting caller: woken by its job's notification, or by a reconnect."""

    __slots__ = ("channel", "event", "inbox", "payload")

    def __init__(self, channel: bytes, event: asyncio.Event | None = None) -> None:
        self.channel = channel
        self.event = event or asyncio.Event()
        self.payload: bytes | None = None
        self.inbox: list[bytes] = []
        """Every message received, in order (for watchers that want them all)."""


class Subscriptions:
    """One pub/sub connection shared by every waiter of a client."""

    def __init__(self, redis: Redis) -> None:
        self._pubsub = redis.pubsub()
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[bytes, set[Waiter]] = {}
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        self._to_subscribe: set[bytes] = set()
        self._flush_scheduled = False

    async def subscribe(self, channel: str, event: asyncio.Event | None = None) -> Waiter:
        """Register a waiter on ``channel``; returns once Redis confirmed the subscription.

        Subscriptions asked for in the same loop tick share one SUBSCRIBE.
        """
        key = channel.encode()
        loop = asyncio.get_running_loop()
        waiter = Waiter(key, event)
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
            if key not in self._confirm:
                asyncio.ensure_future(self._unsubscribe(key))

    async def _unsubscribe(self, key: bytes) -> None:
        with contextlib.suppress(*CONNECTION_ERRORS):
            if key not in self._waiters and self._pubsub.connection is not None:
                await self._pubsub.unsubscribe(key)

    async def _send_subscribes(self) -> None:
        self._flush_scheduled = False
        channels, self._to_subscribe = self._to_subscribe, set()
        if not channels:
            return
        try:
            await self._pubsub.subscribe(*channels)
        except Exception as exc:
            for key in channels:
                fut = self._confirm.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_exception(exc)
            return
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._run())

    async def _run(self) -> None:
        delay = 0.1
        outage = False
        while True:
            try:
                msg = await self._pubsub.get_message(timeout=None)
            except CONNECTION_ERRORS as exc:
                # redis-py reconnects and re-subscribes on the next read; until
                # then, keep trying without spinning.
                if not outage:
                    log.warning("pub/sub connection lost (%s); reconnecting", exc)
                    outage = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            outage = False
            if msg is not None:
                self._handle(msg)

    def _handle(self, msg: dict[str, Any]) -> None:
        kind, channel = msg["type"], msg["channel"]
        if kind == "message":
            for waiter in self._waiters.get(channel, ()):
                waiter.payload = msg["data"]
                waiter.inbox.append(msg["data"])
                waiter.event.set()
        elif kind == "subscribe":
            confirm = self._confirm.pop(channel, None)
            if confirm is not None:
                if not confirm.done():
                    confirm.set_result(None)
            else:
                # A re-subscription after a reconnect: anything published while
                # we were away is lost (pub/sub is at-most-once), so wake the
                # waiters to re-read their records.
                for waiter in self._waiters.get(channel, ()):
                    waiter.event.set()

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
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]


async def wait_outcome(
    batcher: Batcher,
    keys: Keyspace,
    subs: Subscriptions,
    job_id: str,
    timeout: float | None,
    patience: float,
) -> bytes:
    """The job's outcome payload, as soon as it exists.

    Rides out a Redis outage (a restart, dropped connections) for up to
    ``patience`` seconds before letting the connection error through.
    Raises ``TimeoutError`` when ``timeout`` seconds pass first.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    outage = _Outage(patience, deadline)
    while True:
        try:
            waiter = await subs.subscribe(keys.done_channel(job_id))
            break
        except CONNECTION_ERRORS as exc:
            await outage.pause(exc)
    try:
        while True:
            # Subscribed first, read second: no outcome can slip between the two.
            try:
                outcome = await read_outcome(batcher, keys, job_id)
            except CONNECTION_ERRORS as exc:
                await outage.pause(exc)
                continue
            outage.over()
            if outcome is not None:
                return outcome
            wait = RECHECK_INTERVAL
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    raise TimeoutError(job_id)
            try:
                await asyncio.wait_for(waiter.event.wait(), wait)
            except TimeoutError:
                continue  # slow re-check of the record
            if waiter.payload is not None:
                return waiter.payload
            waiter.event.clear()  # woken by a reconnect: re-check the record
    finally:
        subs.discard(waiter)


class _Outage:
    """Backoff while Redis is unreachable; re-raises once it lasted ``patience``
    seconds or the caller's deadline passed."""

    def __init__(self, patience: float, deadline: float | None) -> None:
        self.patience = patience
        self.deadline = deadline
        self.since: float | None = None
        self.delay = 0.05

    async def pause(self, error: BaseException) -> None:
        now = asyncio.get_running_loop().time()
        if self.since is None:
            self.since = now
        if now - self.since >= self.patience:
            raise error
        if self.deadline is not None and now >= self.deadline:
            raise error
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, 1.0)

    def over(self) -> None:
        self.since = None
        self.delay = 0.05


async def watch(
    batcher: Batcher, keys: Keyspace, subs: Subscriptions, job_id: str
) -> AsyncIterator[tuple[str, Any]]:
    """A job's record now, then each progress report, then its outcome:
    ``("record", dict)``, ``("progress", bytes)``…, ``("outcome", bytes)``."""
    wake = asyncio.Event()
    done = await subs.subscribe(keys.done_channel(job_id), wake)
    progress = await subs.subscribe(keys.progress_channel(job_id), wake)
    try:
        record = await read_record(batcher, keys, job_id)
        yield "record", record
        if b"outcome" in record:
            return
        while True:
            try:
                await asyncio.wait_for(wake.wait(), RECHECK_INTERVAL)
            except TimeoutError:
                pass
            wake.clear()
            while progress.inbox:
                yield "progress", progress.inbox.pop(0)
            if done.payload is not None:
                yield "outcome", done.payload
                return
            outcome = await read_outcome(batcher, keys, job_id)  # missed while away?
            if outcome is not None:
                yield "outcome", outcome
                return
    finally:
        subs.discard(done)
        subs.discard(progress)
