"""The reply channel's framing and its bounded memory (``_transport/replies.py``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aioq._transport import replies as rp
from aioq._transport.results import Waiter


class Subs:
    """Stands in for ``results.Subscriptions``: registers the router, confirms it."""

    def attach(self, waiter: Waiter) -> Waiter:
        waiter.confirm()
        return waiter


def opened() -> rp.Replies:
    replies = rp.Replies(Subs(), "p:reply:abc")  # type: ignore[arg-type]
    replies.open()
    return replies


@given(st.binary(max_size=80), st.binary(max_size=200))
def test_frames_round_trip_whatever_the_key_holds(record: bytes, outcome: bytes) -> None:
    assert rp.unframe(rp.frame(record, outcome)) == (record, outcome)


def test_sent_and_early_outcomes_stay_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(rp, "SENT_MAX", 5)
    monkeypatch.setattr(rp, "EARLY_MAX", 2)
    replies = opened()
    for i in range(8):
        assert replies.tag(f"p:job:{i}") == "p:reply:abc"
    assert list(replies.sent) == [f"p:job:{i}".encode() for i in range(3, 8)]
    for i in range(8):
        replies.route(rp.frame(f"p:job:{i}".encode(), b"out%d" % i))
    # Outcomes of forgotten ids are dropped; past EARLY_MAX the oldest goes, and its
    # id with it (its waiter will read the record).
    assert replies.early == {b"p:job:6": b"out6", b"p:job:7": b"out7"}
    assert list(replies.sent) == [b"p:job:6", b"p:job:7"]
    assert replies.wait("p:job:3") is None
    found = replies.wait("p:job:7")
    assert found is not None
    waiter, stale = found
    assert waiter.payload == b"out7" and not stale
    replies.discard(waiter)
    assert replies.sent == {b"p:job:6": 1} and replies.waiting == {}


def test_a_resubscription_marks_waiters_stale_and_wakes_them() -> None:
    replies = opened()
    replies.tag("p:job:1")
    router = replies._router
    assert router is not None
    router.subscribed = False  # the connection dropped: nothing is tagged meanwhile
    assert replies.tag("p:job:2") is None
    router.confirm()  # re-subscribed
    found = replies.wait("p:job:1")
    assert found is not None
    waiter, stale = found
    assert stale and waiter.subscribed and not waiter.event.is_set()
    router.confirm()
    assert waiter.event.is_set()
    replies.route(b"garbage")  # not a frame: ignored
    replies.route(rp.frame(b"p:job:1", b"out"))
    assert waiter.payload == b"out"
