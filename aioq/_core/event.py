"""Lifecycle events: what the workers append to each queue's event stream, as
``App.events()`` hands them out. Pure data, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, NamedTuple

import msgspec

if TYPE_CHECKING:
    from .message import Outcome, Progress

__all__ = [
    "DETAIL_MAX",
    "KINDS",
    "Event",
    "EventKind",
    "Note",
    "after_id",
    "ended",
    "error_detail",
    "parse",
    "progress_detail",
]

EventKind = Literal["started", "progress", "retrying", "succeeded", "failed", "aborted", "dead"]
KINDS: tuple[EventKind, ...] = (
    "started",
    "progress",
    "retrying",
    "succeeded",
    "failed",
    "aborted",
    "dead",
)

DETAIL_MAX = 200
"""Longest ``detail`` kept (characters): events are a log line, not a record."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One lifecycle event of a job, as a worker (or ``abort()``) wrote it.

    ``kind`` is one of ``started``, ``progress``, ``retrying``, ``succeeded``,
    ``failed``, ``aborted``, ``dead``. ``at`` is Redis' clock when it was
    written (the entry id's time); ``id`` orders events of one queue and can be
    passed as ``since=`` to carry on after this event.
    """

    id: str
    at: datetime
    kind: str
    queue: str
    job_id: str
    task: str
    worker: str
    """The worker that made the transition ('' for ``abort()`` of a job not running)."""
    attempt: int
    """The attempt it belongs to (0: none, e.g. a message dead-lettered unread)."""
    detail: str
    """Error type and message (failed, retrying, dead), progress (``3/10``), or ''."""


class Note(NamedTuple):
    """An event to write together with a transition (in that transition's script)."""

    kind: str
    job_id: str
    task: str
    attempt: int
    detail: str = ""


def short(text: str) -> str:
    return text if len(text) <= DETAIL_MAX else text[: DETAIL_MAX - 1] + "…"


def error_detail(type_: str, message: str) -> str:
    """``ValueError: disk full``, cut to ``DETAIL_MAX`` characters."""
    return short(f"{type_}: {message}" if message else type_)


def progress_detail(p: Progress) -> str:
    """``3/10`` or ``0.5``, then the report's extra fields."""
    current = f"{p.current:g}" + (f"/{p.total:g}" if p.total is not None else "")
    extra = " ".join(f"{k}={v}" for k, v in p.info.items())
    return short(f"{current} {extra}" if extra else current)


def parse(queue: str, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
    """An event from its stream entry (fields ``k j t w a d``)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    def get(name: bytes) -> str:
        value = fields.get(name)
        return value.decode("utf-8", "replace") if value is not None else ""

    attempt = get(b"a")
    return Event(
        id=text,
        at=datetime.fromtimestamp(int(text.split("-", 1)[0]) / 1000, tz=UTC),
        kind=get(b"k"),
        queue=queue,
        job_id=get(b"j"),
        task=get(b"t"),
        worker=get(b"w"),
        attempt=int(attempt) if attempt.isdigit() else 0,
        detail=get(b"d"),
    )


def after_id(since_ms: int) -> str:
    """The stream id just before every entry written at or after ``since_ms``
    (XREAD returns entries after the id it is given)."""
    return f"{since_ms - 1}-18446744073709551615" if since_ms > 0 else "0-0"


def ended(job_id: str, task: str, attempt: int, outcome: Outcome) -> Note:
    """The event of an attempt's final outcome (``succeeded``, ``failed``, ``aborted``)."""
    err = outcome.error
    return Note(
        outcome.state, job_id, task, attempt, error_detail(err.type, err.message) if err else ""
    )
