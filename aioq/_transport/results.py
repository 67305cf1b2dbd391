"""Job records and awaiting outcomes without polling.

A waiter registers on the job's ``done`` channel, waits until that channel is
subscribed, *then* reads the record: an outcome published after the
subscription is delivered to it, one published before is in the record, so no
wake-up is lost. Pub/sub is at-most-once, so a waiter reads the record again
after every (re-)subscription of its channel and on a slow timer.

A job this client sent after its reply channel was up is awaited there instead,
with no subscription and no record read (``replies.py``); the rules below hold
for it too (a re-subscription makes its waiter read the record).

Every wait has a deadline from its first await: subscribing, connecting and
reading all count against the caller's timeout. Nothing a waiter awaits
depends on Redis answering: a subscription that is never confirmed only
delays the first look at the record until the slow timer or the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

from redis import exceptions as rex

from . import sentinel
from .connection import OPERATION_TIMEOUT, OUTAGE_ERRORS, REDIS_ERRORS
from .outage import Outage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from redis.asyncio.connection import AbstractConnection

    from .batcher import Batcher
    from .keys import Keyspace

log = logging.getLogger("aioq")

RECHECK_INTERVAL = 5.0
"""Seconds between record reads while waiting, to cover a lost notification."""

FINAL_LOOK = 0.5
"""Seconds a waiter whose deadline passed before it could read the record (its
subscription was never confirmed) still spends on one last read."""

IDLE_PING = 10.0
"""Seconds without a word on the pub/sub connection, while waiters wait, before it is PINGed."""

MAX_CHANNELS = 1000
"""Channels per SUBSCRIBE / UNSUBSCRIBE command."""

Opener: TypeAlias = "Callable[[int], Awaitable[AbstractConnection]]"
"""Makes the pub/sub reader's next connection (not connected yet); its argument
counts the connections made so far (a cluster's opener moves on to another node)."""

RECONNECT_BACKOFF_MAX = 2.0
"""Longest pause between two attempts to open the pub/sub connection, in seconds."""


async def read_outcome(batcher: Batcher, keys: Keyspace, job_id: str) -> bytes | None:
    return cast("bytes | None", await batcher.call("HGET", keys.job(job_id), "outcome"))


async def read_record(batcher: Batcher, keys: Keyspace, job_id: str) -> dict[bytes, bytes]:
    flat = await batcher.call("HGETALL", keys.job(job_id))
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


class Waiter:
    """One awaiting caller of one channel.

    Its ``event`` is set when a message arrives (``payload``, ``inbox``) and when
    its channel's subscription is confirmed, first or again after a reconnect
    (``subscribed``): either way the caller looks again.
    """

    __slots__ = ("channel", "confirmations", "event", "inbox", "payload", "subscribed")

    def __init__(self, channel: bytes, event: asyncio.Event | None = None) -> None:
        self.channel = channel
        self.event = event or asyncio.Event()
        self.payload: bytes | None = None
        self.inbox: list[bytes] = []
        """Every message received, in order (for watchers that want them all)."""
        self.subscribed = False
        """Redis confirmed the channel's subscription on the current connection."""
        self.confirmations = 0
        """How many times it did (a reconnect re-subscribes: a new chance of a missed message)."""

    def deliver(self, data: bytes) -> None:
        self.payload = data
        self.inbox.append(data)
        self.event.set()

    def confirm(self) -> None:
        self.subscribed = True
        self.confirmations += 1
        self.event.set()


class Subscriptions:
    """One pub/sub connection per client and event loop, owned by one reader task.

    Callers never touch the connection: ``add`` registers a waiter (no I/O) and
    nudges the reader task, the only code that connects, sends SUBSCRIBE and
    UNSUBSCRIBE for whatever changed since it last looked (so subscriptions
    asked for in the same loop tick share one command), reads replies and
    messages, and, after losing the connection, reconnects with backoff and
    re-subscribes every channel that still has waiters. Each confirmation wakes
    the channel's waiters so they read their records. A connection on which
    Redis stops answering is dropped after ``timeout`` seconds and replaced.
    """

    def __init__(
        self, opener: Opener, timeout: float = OPERATION_TIMEOUT, pool: Any = None
    ) -> None:
        self._open = opener
        self._pool = pool
        """The pool ``opener`` makes connections from, if any (a Sentinel pool tells
        when the master moved: ``sentinel.moved``)."""
        self._turn = 0
        self._timeout = timeout
        self._waiters: dict[bytes, set[Waiter]] = {}
        self._changed = asyncio.Event()
        """Set when the channels with waiters may differ from those subscribed."""
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        # The current connection's state; written only by the reader task.
        self._live: set[bytes] = set()
        """Channels SUBSCRIBEd (and not UNSUBSCRIBEd since) on the current connection."""
        self._confirmed: set[bytes] = set()
        """Live channels whose latest SUBSCRIBE Redis confirmed."""
        self._unanswered: dict[bytes, int] = {}
        """(UN)SUBSCRIBEs sent per channel whose reply has not arrived yet."""
        self._owed = 0
        """Replies Redis owes on the current connection (subscribe, unsubscribe, pong)."""
        self._heard = 0.0
        """Loop time of the last reply, or of the command that started a wait for one."""
        self._heard_since_connect = False

    # -- callers -------------------------------------------------------------

    def add(self, channel: str, event: asyncio.Event | None = None) -> Waiter:
        """Register a waiter on ``channel``. Does no I/O and never waits: the reader
        task subscribes, and sets the waiter's event once Redis confirmed it."""
        return self.attach(Waiter(channel.encode(), event))

    def attach(self, waiter: Waiter) -> Waiter:
        """Register a waiter made by the caller (``add`` makes a plain one)."""
        key = waiter.channel
        waiters = self._waiters.get(key)
        if waiters is None:
            waiters = self._waiters[key] = set()
            self._changed.set()
        waiters.add(waiter)
        waiter.subscribed = key in self._confirmed
        if not self._closed and (self._reader is None or self._reader.done()):
            self._reader = asyncio.create_task(self._run(), name="aioq-pubsub")
        return waiter

    def discard(self, waiter: Waiter) -> None:
        """Remove a waiter; its channel is unsubscribed when it has none left."""
        waiters = self._waiters.get(waiter.channel)
        if waiters is None:
            return
        waiters.discard(waiter)
        if not waiters:
            del self._waiters[waiter.channel]
            self._changed.set()

    async def aclose(self) -> None:
        """Stop the reader task and close the connection; wake any waiter left."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader])
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()
        self._waiters.clear()

    # -- the reader task -----------------------------------------------------

    async def _run(self) -> None:
        """Keep one connection subscribed to every channel that has waiters."""
        delay = 0.0
        outage = False
        while not self._closed:
            if not self._waiters:  # connect on demand only
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                await self._session(outage)
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                if self._heard_since_connect:
                    delay, outage = 0.0, False
                if not outage:
                    log.warning(
                        "pub/sub connection lost (%s); reconnecting (waiters re-read records)",
                        str(exc) or type(exc).__name__,
                    )
                    outage = True
            except Exception:
                log.exception("pub/sub reader failed; reconnecting")
                outage = True
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.05), RECONNECT_BACKOFF_MAX)

    async def _session(self, after_outage: bool) -> None:
        """One connection's life: subscribe what is wanted, read, until it fails."""
        loop = asyncio.get_running_loop()
        reader: asyncio.Task[None] | None = None
        self._heard_since_connect = False
        conn: AbstractConnection | None = None
        try:
            async with asyncio.timeout(self._timeout):
                conn = await self._open(self._turn)
                self._turn += 1
                await conn.connect()  # type: ignore[no-untyped-call]
            self._heard = loop.time()
            reader = asyncio.create_task(self._read(conn, after_outage))
            # Until closed, not only until cancelled: redis-py can swallow the
            # cancellation of a question to the sentinels (``_check``: it lands
            # during their TLS handshake, becomes a connection error, and
            # ``refresh`` ignores those), and aclose() then waited forever.
            while not self._closed:
                self._changed.clear()
                await self._sync(conn)
                changed = asyncio.ensure_future(self._changed.wait())
                tick = 1.0 if self._waiters or self._owed else None
                try:
                    await asyncio.wait(
                        (reader, changed), timeout=tick, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    changed.cancel()
                if reader.done():
                    reader.result()  # raises what ended it
                    raise rex.ConnectionError("pub/sub reader stopped")
                await self._check(conn, loop.time())
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.wait([reader])
            self._forget()
            if conn is not None:
                await conn.disconnect(nowait=True)

    async def _sync(self, conn: AbstractConnection) -> None:
        """UNSUBSCRIBE channels nobody waits on any more, SUBSCRIBE new ones."""
        gone = [key for key in self._live if key not in self._waiters]
        new = [key for key in self._waiters if key not in self._live]
        for chunk in _chunks(gone):
            self._live.difference_update(chunk)
            self._confirmed.difference_update(chunk)
            await self._send(conn, "UNSUBSCRIBE", chunk)
        for chunk in _chunks(new):
            self._live.update(chunk)
            await self._send(conn, "SUBSCRIBE", chunk)

    async def _send(self, conn: AbstractConnection, command: str, channels: list[bytes]) -> None:
        if not conn.is_connected:  # never let redis-py reconnect it behind our back
            raise rex.ConnectionError("pub/sub connection closed")
        for key in channels:
            self._unanswered[key] = self._unanswered.get(key, 0) + 1
        self._owe(len(channels))
        async with asyncio.timeout(self._timeout):
            await conn.send_command(command, *channels, check_health=False)

    def _owe(self, replies: int) -> None:
        if not self._owed:
            self._heard = asyncio.get_running_loop().time()  # start waiting from now
        self._owed += replies

    async def _check(self, conn: AbstractConnection, now: float) -> None:
        """Drop a connection on which Redis stopped answering, or to a master the
        sentinels replaced (it may stay up, and never hear a PUBLISH, for 8-20 s);
        PING a quiet one."""
        if await sentinel.moved(self._pool, conn):
            raise rex.ConnectionError("the sentinels named a new master")
        if self._owed:
            if now - self._heard > self._timeout:
                raise rex.TimeoutError(f"Redis did not answer within {self._timeout:g}s")
        elif self._waiters and now - self._heard > IDLE_PING:
            if not conn.is_connected:
                raise rex.ConnectionError("pub/sub connection closed")
            self._owe(1)
            async with asyncio.timeout(self._timeout):
                await conn.send_command("PING", check_health=False)

    async def _read(self, conn: AbstractConnection, after_outage: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            reply = await conn.read_response(timeout=math.inf, push_request=True)
            self._heard = loop.time()
            if not self._heard_since_connect:
                self._heard_since_connect = True
                if after_outage:
                    log.info("pub/sub connection restored")
            self._dispatch(reply)

    def _dispatch(self, reply: Any) -> None:
        if not isinstance(reply, list) or not reply:
            self._owed = max(0, self._owed - 1)  # PONG outside subscribed mode
            return
        kind = _as_bytes(reply[0]).lower()
        if kind == b"message" and len(reply) >= 3:
            for waiter in self._waiters.get(_as_bytes(reply[1]), ()):
                waiter.deliver(reply[2])
            return
        self._owed = max(0, self._owed - 1)
        if kind in (b"subscribe", b"unsubscribe") and len(reply) >= 2:
            self._answered(_as_bytes(reply[1]), subscribed=kind == b"subscribe")

    def _answered(self, key: bytes, *, subscribed: bool) -> None:
        """A (UN)SUBSCRIBE reply: once the latest command for the channel is answered
        and it was a SUBSCRIBE, the channel's waiters may read their records."""
        left = self._unanswered.get(key, 0) - 1
        if left > 0:
            self._unanswered[key] = left
            return
        self._unanswered.pop(key, None)
        if subscribed and key in self._live:
            self._confirmed.add(key)
            for waiter in self._waiters.get(key, ()):
                waiter.confirm()

    def _forget(self) -> None:
        """The connection is gone, and every subscription with it."""
        self._live.clear()
        self._confirmed.clear()
        self._unanswered.clear()
        self._owed = 0
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.subscribed = False


def _as_bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _chunks(keys: list[bytes]) -> Iterable[list[bytes]]:
    for start in range(0, len(keys), MAX_CHANNELS):
        yield keys[start : start + MAX_CHANNELS]


class ReplyWaits(Protocol):
    """A client's reply channel, as the waiters see it (``replies.Replies``)."""

    def wait(self, record: str) -> tuple[Waiter, bool] | None: ...
    def discard(self, waiter: Waiter) -> None: ...


async def wait_outcome(
    batcher: Batcher,
    keys: Keyspace,
    subs: Subscriptions,
    job_id: str,
    timeout: float | None,
    patience: float,
    replies: ReplyWaits | None = None,
) -> bytes:
    """The job's outcome payload, as soon as it exists.

    Raises ``TimeoutError`` once ``timeout`` seconds have passed since the call,
    whatever it was doing then (waiting for the subscription, reading the record,
    riding out an outage). Rides out a Redis outage for up to ``patience``
    seconds before letting the connection error through.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    outage = Outage(patience)
    fast = None if replies is None else replies.wait(keys.job(job_id))
    if fast is None:
        waiter = subs.add(keys.done_channel(job_id))
        look = waiter.subscribed  # the channel was already subscribed: look at once
    else:  # sent by this client with its reply channel named (replies.py)
        waiter, stale = fast
        look = stale and waiter.subscribed
    try:
        while True:
            if waiter.payload is not None:
                return waiter.payload
            if look:
                # Subscribed (or the slow timer ran out) first, read second.
                waiter.event.clear()
                outcome = await _look(batcher, keys, job_id, deadline, outage)
                if outcome is not None:
                    return outcome
            wait = RECHECK_INTERVAL
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    if not look:  # the subscription never came: one last look
                        last = loop.time() + FINAL_LOOK
                        outcome = await _look(batcher, keys, job_id, last, outage)
                        if outcome is not None:
                            return outcome
                    if waiter.payload is not None:  # arrived while we read
                        return waiter.payload
                    raise TimeoutError(f"job {job_id} did not finish in time")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await waiter.event.wait()
            look = True  # a message, a (re-)subscription, or the slow timer
    finally:
        if fast is None:
            subs.discard(waiter)
        else:
            cast("ReplyWaits", replies).discard(waiter)


async def _look(
    batcher: Batcher, keys: Keyspace, job_id: str, until: float | None, outage: Outage
) -> bytes | None:
    """Read the job's outcome by loop time ``until`` (``TimeoutError`` after), retrying
    through connection errors for as long as ``outage`` allows."""
    while True:
        try:
            async with asyncio.timeout_at(until):
                outcome = await read_outcome(batcher, keys, job_id)
        except TimeoutError:  # the deadline (redis-py's own timeouts are not builtins)
            raise
        except OUTAGE_ERRORS as exc:
            await outage.pause(exc, until)
            continue
        outage.over()
        return outcome


async def watch(
    batcher: Batcher, keys: Keyspace, subs: Subscriptions, job_id: str
) -> AsyncIterator[tuple[str, Any]]:
    """A job's record now, then each progress report, then its outcome:
    ``("record", dict)``, ``("progress", bytes)``…, ``("outcome", bytes)``.

    Progress reports published while the pub/sub connection was down are missed
    (the record holds the latest); the outcome never is: every wake-up, and the
    slow timer, re-reads it.
    """
    wake = asyncio.Event()
    done = subs.add(keys.done_channel(job_id), wake)
    progress = subs.add(keys.progress_channel(job_id), wake)
    try:
        # Both subscribed (or the slow timer ran out) first, the record second.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECHECK_INTERVAL):
                while not (done.subscribed and progress.subscribed):
                    await wake.wait()
                    wake.clear()
        seen = done.confirmations
        record = await read_record(batcher, keys, job_id)
        yield "record", record
        if b"outcome" in record:
            return
        while True:
            while progress.inbox:
                yield "progress", progress.inbox.pop(0)
            if done.payload is not None:
                yield "outcome", done.payload
                return
            wake.clear()
            woken = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK_INTERVAL):
                    woken = await wake.wait()
            if not woken or done.confirmations != seen:
                # The slow timer, or re-subscribed after a reconnect: missed while away?
                seen = done.confirmations
                outcome = await read_outcome(batcher, keys, job_id)
                if outcome is not None:
                    yield "outcome", outcome
                    return
    finally:
        subs.discard(done)
        subs.discard(progress)
