"""Named request and reply types of the broker (``broker.py``), and the numeric
status codes the Lua scripts return.

Every ``IntEnum`` here is also given to the scripts: ``scripts.py`` writes a
``codes.lua`` fragment from them (``WROTE_WRITTEN = 1``, …), which scripts
include, so Lua and Python share one definition of each code.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .._core.event import Note


class Wrote(IntEnum):
    """What a fenced outcome write did (finish.lua, complete.lua, mark.lua)."""

    NOTHING = 0
    """No outcome to write (a bare ack)."""
    WRITTEN = 1
    FINAL = 2
    """The job had already ended: first writer wins, nothing changed."""
    FENCED = 3
    """A later attempt holds the job: nothing written (and nothing acked)."""


class Held(IntEnum):
    """Whether a delivery still holds its stream entry (fence.lua's holds_entry)."""

    NOT_HELD = 0
    HELD = 1
    NO_GROUP = 2
    """The consumer group is gone (Redis lost its data): nobody else holds it either."""


class Verdict(IntEnum):
    """admit.lua's answer for a job of a limited task."""

    START = 0
    WAIT = 1
    """Wait for the reserved rate slot (the reply carries the wait, µs)."""
    FULL = 2
    """The task's max_running is reached: try again later."""


class AbortCode(IntEnum):
    """What abort.lua did."""

    NO_RECORD = 0
    """An id never sent, or expired: nothing written."""
    ABORTED = 1
    ENDED = 2
    """The job had already ended."""


class TickCode(IntEnum):
    """What tick.lua did with a schedule's tick."""

    SKIPPED = 0
    """That tick, or a later one, was fired already."""
    SENT = 1
    EARLY = 2
    """The tick is more than the grace ahead of Redis time: refused."""
    PAUSED = 3
    """The schedule is paused (pause.lua): nothing sent or remembered."""


CODES: dict[str, type[IntEnum]] = {
    "WROTE": Wrote,
    "HELD": Held,
    "VERDICT": Verdict,
    "ABORT": AbortCode,
    "TICK": TickCode,
}
"""The enums written into ``codes.lua`` for the scripts: ``Wrote.FINAL`` is
``WROTE_FINAL`` there."""


def lua_codes() -> str:
    """The ``codes.lua`` fragment: one ``local NAME = value`` per code."""
    lines = ["-- Status codes, generated from aioq/_transport/types.py (CODES)."]
    for prefix, enum in CODES.items():
        lines.extend(f"local {prefix}_{member.name} = {int(member)}" for member in enum)
    return "\n".join(lines) + "\n"


class NewJob(NamedTuple):
    """One job being sent: what its record and its message need."""

    job_id: str
    task: str
    queue: str
    level: int
    """Priority level: which of the queue's streams (and delayed sets) it goes to."""
    payload: bytes | None
    """The encoded message; None for a workflow step sent later by a worker (only
    its record is written now)."""
    enqueued_ms: int
    result_ttl_ms: int
    """The job's resolved result_ttl: the record's TTL (plus any delay)."""
    lock: str | None = None
    """The unique lock it holds (its job id, or ``task:digest`` for unique_for)."""


class Aborted(NamedTuple):
    """What the record of a job that was just aborted said about it."""

    task: str | None
    queue: str | None
    lock: str | None
    result_ttl_ms: int | None
    worker: str | None = None
    """The worker of its last attempt (None: it never started)."""
    attempts: int = 0


class Admission(NamedTuple):
    """admit.lua's reply for one job."""

    verdict: Verdict
    wait_us: int = 0
    """With ``Verdict.WAIT``: how long until its reserved slot."""


class ScheduleState(NamedTuple):
    """What a schedule's state hash remembers."""

    last_ms: int | None
    """The last tick fired (ms since the epoch); None: never fired."""
    last_job: str
    """The job id sent for it."""
    fired_ms: int | None
    """When it was sent, by the Redis clock (older versions: the sender's clock)."""
    paused: bool = False
    resumed_ms: int | None = None
    """When it was last resumed (Redis time): ticks up to then count as fired."""

    @property
    def planned_from(self) -> int | None:
        """The tick to continue after: the last fired, or the last resume if later
        (a resumed schedule does not back-fill its paused window)."""
        found = [t for t in (self.last_ms, self.resumed_ms) if t is not None]
        return max(found) if found else None


class Fired(NamedTuple):
    """What ``tick.lua`` did with a tick."""

    sent: bool
    """This call sent the tick's job."""
    last_ms: int
    """The last tick fired (this one, when sent); Redis time when ``early``."""
    early: bool
    """Refused: the tick is more than the grace ahead of Redis time."""
    paused: bool = False
    """Refused: the schedule is paused (nothing sent or remembered)."""


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
