"""The bookkeeping of ``Subscriptions``: when a channel counts as subscribed.

Replies are fed to the reader's dispatcher by hand (no connection is opened):
a waiter may read its record only once Redis answered the *latest* SUBSCRIBE of
its channel, so a publish cannot fall between its read and its subscription.
"""

from __future__ import annotations

from redis.asyncio.connection import AbstractConnection

from aioq._transport.results import Subscriptions


async def _no_connection(turn: int) -> AbstractConnection:
    raise AssertionError("this test opens no connection")


def subscriptions() -> Subscriptions:
    subs = Subscriptions(_no_connection)  # creating one does no I/O
    subs._closed = True  # starts no reader task: the replies come from the test
    return subs


def sent(subs: Subscriptions, command: str, *channels: bytes) -> None:
    """What ``_send`` records, without a connection."""
    for key in channels:
        subs._unanswered[key] = subs._unanswered.get(key, 0) + 1
        if command == "SUBSCRIBE":
            subs._live.add(key)
        else:
            subs._live.discard(key)
            subs._confirmed.discard(key)
    subs._owed += len(channels)


def test_a_waiter_is_confirmed_by_its_channels_subscribe_reply() -> None:
    subs = subscriptions()
    waiter = subs.add("a")
    assert not waiter.subscribed and not waiter.event.is_set()
    sent(subs, "SUBSCRIBE", b"a")
    subs._dispatch([b"subscribe", b"a", 1])
    assert waiter.subscribed and waiter.event.is_set() and waiter.confirmations == 1
    assert subs._owed == 0
    # A later waiter of a confirmed channel may read at once.
    assert subs.add("a").subscribed
    subs._dispatch([b"message", b"a", b"payload"])
    assert waiter.payload == b"payload" and waiter.inbox == [b"payload"]


def test_an_unsubscribe_then_subscribe_in_flight_confirms_only_at_the_second_reply() -> None:
    subs = subscriptions()
    first = subs.add("a")
    sent(subs, "SUBSCRIBE", b"a")
    subs._dispatch([b"subscribe", b"a", 1])
    subs.discard(first)
    sent(subs, "UNSUBSCRIBE", b"a")  # nobody waits: unsubscribed...
    second = subs.add("a")  # ...and wanted again before Redis answered
    assert not second.subscribed
    sent(subs, "SUBSCRIBE", b"a")
    subs._dispatch([b"subscribe", b"a", 1])  # the first SUBSCRIBE's reply: stale
    subs._dispatch([b"unsubscribe", b"a", 0])
    assert not second.subscribed and not second.event.is_set()
    subs._dispatch([b"subscribe", b"a", 1])
    assert second.subscribed and second.event.is_set()
    assert subs._owed == 0 and not subs._unanswered


def test_a_lost_connection_unconfirms_every_waiter() -> None:
    subs = subscriptions()
    waiter = subs.add("a")
    sent(subs, "SUBSCRIBE", b"a")
    subs._dispatch([b"subscribe", b"a", 1])
    subs._forget()
    assert not waiter.subscribed and not subs._live and subs._owed == 0
    assert not subs.add("a").subscribed
    # Re-subscribed on the next connection: waiters are woken to re-read.
    waiter.event.clear()
    sent(subs, "SUBSCRIBE", b"a")
    subs._dispatch([b"subscribe", b"a", 1])
    assert waiter.event.is_set() and waiter.confirmations == 2


def test_pongs_settle_what_is_owed() -> None:
    subs = subscriptions()
    subs._owed = 2
    subs._dispatch([b"pong", b""])  # PING while subscribed
    subs._dispatch(b"PONG")  # PING outside subscribed mode
    assert subs._owed == 0
