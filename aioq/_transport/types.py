"""Named request and reply types of the worker's Redis operations."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .._core.event import Note


class Entry(NamedTuple):
    """One stream entry handed to a worker."""

    stream: str
    """The level stream it was read from (its key)."""
    queue: str
    level: int
    id: bytes
    payload: bytes | None  # None when the entry has no payload field (garbage)
    deliveries: int = 1

    @property
    def key(self) -> tuple[str, bytes]:
        """Identifies the entry among all of a worker's streams."""
        return (self.stream, self.id)


class Start(NamedTuple):
    """A job about to run one attempt (start.lua)."""

    job_id: str
    task: str
    queue: str
    enqueued_ms: int


class Admit(NamedTuple):
    """A limited task's job asking to start (see admit.lua)."""

    task: str
    job_id: str
    interval_us: int  # 0: no rate limit
    reserved: bool
    max_running: int  # 0: no concurrency limit
    lease_ms: int


class Finish(NamedTuple):
    """The final outcome of one attempt, as the completer writes it."""

    job_id: str
    attempt: int
    """The attempt's fencing token with the worker id (0: no running attempt,
    e.g. a dead letter's failure, which any non-final job takes)."""
    state: str
    outcome: bytes
    finished_ms: int
    ttl_ms: int
    unlock: tuple[str, int] | None = None
    """A unique job's lock to release with it: (lock key, ms to keep it or 0)."""


class Completion(NamedTuple):
    """One delivery to acknowledge, with the outcome to write first (or None)."""

    entry: Entry
    finish: Finish | None
    note: Note | None = None
    """The lifecycle event of its outcome: written only if this write lands it."""


class Wrote(IntEnum):
    """What a fenced outcome write did (the scripts' status codes)."""

    NOTHING = 0
    """No outcome to write (a bare ack)."""
    WRITTEN = 1
    FINAL = 2
    """The job had already ended: first writer wins, nothing changed."""
    FENCED = 3
    """A later attempt holds the job: nothing written (and nothing acked)."""


class Done(NamedTuple):
    """The completer's reply for one ``Completion``."""

    wrote: Wrote
    acked: bool


class Renewed(NamedTuple):
    """What renewing a stream's leases found."""

    taken: list[bytes]
    """Entries another consumer owns now: a takeover."""
    gone: list[bytes]
    """Entries no longer pending: acked (usually just now, by this worker) or deleted."""


class Claimed(NamedTuple):
    """One recovery pass over a queue."""

    cursors: list[bytes]
    """Where each level stream's next pass starts."""
    entries: list[Entry]
    """Entries taken over, with their delivery counts."""
    deleted: int
    """Pending ids whose entries had been deleted from the stream."""
    mine: list[tuple[str, bytes]]
    """This consumer's own idle entries (stream, id): not claimed."""
