"""Lifecycle events: ``App.events()`` tails what the workers append to each
queue's capped event stream (``started``, ``progress``, ``retrying``,
``succeeded``, ``failed``, ``aborted``, ``dead``), merged across queues in the
order Redis wrote them. ``aioq events APP`` prints the same."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from ._core.event import Event, after_id, parse
from ._transport.connection import broker_errors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from ._core.host import AppHandle
    from ._transport.broker import Broker

__all__ = ["Event", "Events"]

PAGE = 500
"""Events read per queue and round trip."""
REFRESH = 5.0
"""Seconds between two looks for queues that live workers started reading."""
_ID = re.compile(r"^\d+-\d+$")


def _order(ev: Event) -> tuple[int, int, str]:
    ms, seq = ev.id.split("-", 1)
    return int(ms), int(seq), ev.queue


class Events:
    """``App``'s side of the lifecycle events (a base class of it)."""

    events_maxlen: int

    async def events(
        self,
        since: datetime | timedelta | str | None = None,
        *,
        queues: Sequence[str] | None = None,
        follow: bool = True,
        block: float = 1.0,
    ) -> AsyncIterator[Event]:
        """Lifecycle events of the app's jobs, oldest first, as ``aioq.Event``::

            async for ev in app.events(since=timedelta(minutes=5)):
                print(ev.at, ev.kind, ev.task, ev.job_id, ev.detail)

        Workers write events only when the app has ``events_maxlen`` > 0 (off by
        default). ``since``: None (default) for events from now on; a ``datetime`` or a
        ``timedelta`` back from now (Redis' clock) for older ones still kept (each
        queue keeps about ``App(events_maxlen=…)``); or an ``Event.id`` to carry
        on after that event. ``queues``: default, every queue of the app, of a
        live worker, or with events. ``follow=False`` stops once caught up;
        else it waits for new events (``block`` seconds per wait) until the
        caller stops iterating.

        Raises ``BrokerUnavailable`` when Redis cannot be reached.
        """
        app = cast("AppHandle", self)
        broker = app.broker
        async with broker_errors(app.url):
            start = await _start(broker, since)
            known = list(dict.fromkeys(queues)) if queues else await _queues(app, True)
        after = dict.fromkeys(known, start)
        held: list[Event] = []  # read, not yet handed out (another queue may be behind)
        looked = time.monotonic()
        wait: int | None = None
        while True:
            if not queues and time.monotonic() - looked > REFRESH:
                async with broker_errors(app.url):
                    for q in await _queues(app, False):
                        after.setdefault(q, start)
                looked = time.monotonic()
            batch = await broker.read_events(after, PAGE, wait)
            behind: list[Event] = []  # the last event read of queues that may have more
            for queue, items in batch:
                after[queue] = _text(items[-1][0])
                held.extend(parse(queue, entry_id, fields) for entry_id, fields in items)
                if len(items) == PAGE:
                    behind.append(held[-1])
            if batch:
                held.sort(key=_order)
                bound = min(map(_order, behind)) if behind else None
                ready = [e for e in held if bound is None or _order(e) <= bound]
                held = held[len(ready) :]
                for ev in ready:
                    yield ev
                wait = None
                continue
            if not follow:
                return
            wait = max(1, round(block * 1000))


async def _start(broker: Broker, since: datetime | timedelta | str | None) -> str:
    """The id to read each queue's events after."""
    if isinstance(since, str):
        if not _ID.match(since):
            raise ValueError(f"since: an Event.id such as '1764412345678-0', not {since!r}")
        return since
    if isinstance(since, datetime):
        if since.tzinfo is None:
            raise ValueError("since: give an aware datetime (with a tzinfo), e.g. in UTC")
        return after_id(max(0, round(since.timestamp() * 1000)))
    now = await broker.redis_time()
    if since is None:
        return f"{now}-0"
    if isinstance(since, timedelta):
        return after_id(max(0, now - round(since.total_seconds() * 1000)))
    raise TypeError(f"since must be a datetime, timedelta, Event.id or None, not {since!r}")


async def _queues(app: AppHandle, scan: bool) -> list[str]:
    """The app's queues, every queue a live worker reads, and (``scan``) every
    queue with an event stream."""
    found = set(app.queues())
    for worker in await app.broker.live_workers():
        found.update(worker.queues)
    if scan:
        found.update(await app.broker.event_queues())
    return sorted(found)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
