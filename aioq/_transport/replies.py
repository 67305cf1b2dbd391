"""One reply channel per client: results without a SUBSCRIBE per job.

Once a client awaited a result, it keeps one channel of its own subscribed (on
the shared pub/sub connection of ``results.Subscriptions``) and names it in the
record of every job it sends to run now (field ``reply``). Every script that
ends a job (``finish_job``, ``abort.lua``) publishes the outcome on the job's own
``done`` channel as before *and*, when the record names one, on the reply channel,
framed with the record's key (``<len>:<record key><outcome>``: see ``frame``).

A waiter of a job this client sent while the channel was confirmed, with no
reconnect since, needs no round trip at all: every publication since the send
reaches this connection, and one that came before ``result()`` was called is
kept in ``early``. Any other case (an id sent by another process, before the
channel was up, or across a reconnect) reads the record as ``results`` always did.

Both maps are bounded: ``sent`` forgets its oldest ids past ``SENT_MAX`` (their
waiters read the record), ``early`` its oldest outcomes past ``EARLY_MAX`` (their
ids leave ``sent`` with them), so a process that sends without awaiting stays
small.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .results import Waiter

if TYPE_CHECKING:
    from .results import Subscriptions

SENT_MAX = 10_000
"""Job ids remembered as sent with the reply channel named."""
EARLY_MAX = 1_000
"""Outcomes kept that arrived before their ``result()`` was called."""


def frame(record: bytes, outcome: bytes) -> bytes:
    """What the scripts publish on a reply channel (for tests; Lua builds it)."""
    return b"%d:%s%s" % (len(record), record, outcome)


def unframe(data: bytes) -> tuple[bytes, bytes]:
    """(record key, outcome) of a reply channel message."""
    colon = data.index(b":")
    end = colon + 1 + int(data[:colon])
    return data[colon + 1 : end], data[end:]


class _Router(Waiter):
    """The channel's own waiter on the pub/sub connection: routes each message
    to the waiters of its job, and passes (re-)subscriptions on to all of them."""

    __slots__ = ("replies",)

    def __init__(self, channel: bytes, replies: Replies) -> None:
        super().__init__(channel)
        self.replies = replies

    def deliver(self, data: bytes) -> None:
        self.replies.route(data)

    def confirm(self) -> None:
        super().confirm()
        for waiters in self.replies.waiting.values():
            for waiter in waiters:
                waiter.confirm()


class Replies:
    """The reply channel of one client and event loop."""

    def __init__(self, subs: Subscriptions, channel: str) -> None:
        self.channel = channel
        self._subs = subs
        self._router: _Router | None = None
        self.sent: dict[bytes, int] = {}
        """Record key → the channel's confirmation count when the job was sent."""
        self.early: dict[bytes, bytes] = {}
        """Record key → outcome that arrived with nobody waiting yet."""
        self.waiting: dict[bytes, set[Waiter]] = {}

    def open(self) -> None:
        """Keep the channel subscribed from now on (no I/O: the reader task does it)."""
        if self._router is None:
            self._router = _Router(self.channel.encode(), self)
            self._subs.attach(self._router)

    @property
    def ready(self) -> bool:
        """Subscribed and confirmed: jobs sent now name the channel."""
        return self._router is not None and self._router.subscribed

    def tag(self, record: str) -> str | None:
        """The channel to name in the record of a job about to be sent, or None
        while it is not confirmed (never opened, or reconnecting)."""
        router = self._router
        if router is None or not router.subscribed:
            return None
        sent = self.sent
        sent[record.encode()] = router.confirmations
        if len(sent) > SENT_MAX:
            del sent[next(iter(sent))]
        return self.channel

    def route(self, data: bytes) -> None:
        try:
            record, outcome = unframe(data)
        except ValueError:
            return  # not ours (a stray PUBLISH on the channel)
        waiters = self.waiting.get(record)
        if waiters:
            for waiter in waiters:
                waiter.deliver(outcome)
        elif record in self.sent:
            early = self.early
            early[record] = outcome
            if len(early) > EARLY_MAX:
                oldest = next(iter(early))
                del early[oldest]
                self.sent.pop(oldest, None)

    def wait(self, record: str) -> tuple[Waiter, bool] | None:
        """A waiter for a job sent with this channel named, and whether the record
        must be read first (the channel was re-subscribed since the send, so a
        publication may have been missed). None for any other job: it takes its
        ``done`` channel. A waiter whose outcome already arrived has it as payload."""
        key = record.encode()
        epoch = self.sent.get(key)
        router = self._router
        if epoch is None or router is None:
            return None
        waiter = Waiter(key)
        outcome = self.early.pop(key, None)
        if outcome is not None:
            waiter.deliver(outcome)
        self.waiting.setdefault(key, set()).add(waiter)
        waiter.subscribed = router.subscribed
        waiter.confirmations = router.confirmations
        return waiter, router.confirmations != epoch

    def discard(self, waiter: Waiter) -> None:
        waiters = self.waiting.get(waiter.channel)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self.waiting[waiter.channel]
                self.sent.pop(waiter.channel, None)
