"""Dead letters: messages that could not run, kept with the reason, re-drivable.

A message lands in its queue's dead-letter stream (``{prefix}:{queue}:dead``)
when it cannot be decoded, names an unknown task, has arguments that do not
fit the task, is over ``max_message_bytes``, or was delivered more than
``max_deliveries`` times. ``App.dead_letters()``, ``App.retry_dead()`` and
``App.purge_dead()`` (and ``aioq dead list|retry|purge``) work on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from ._core.message import decode_message
from ._transport.connection import broker_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._core.host import AppHandle

__all__ = ["DeadLetter"]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """One dead-lettered message."""

    id: str
    """Its id in the dead-letter stream (what ``retry_dead`` takes)."""
    queue: str
    reason: str
    dead_at: datetime | None
    origin: str | None
    """Its id in the work stream before it died."""
    job_id: str | None
    """The job it belongs to, when the payload could be decoded."""
    task: str | None
    payload: bytes


def _parse(queue: str, entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    payload = fields.get(b"m", b"")
    job_id = task = None
    try:
        msg = decode_message(payload)
        job_id, task = msg.id, msg.task
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    at = fields.get(b"at")
    origin = fields.get(b"origin")
    return DeadLetter(
        id=entry_id.decode(),
        queue=queue,
        reason=fields.get(b"reason", b"").decode(errors="replace"),
        dead_at=datetime.fromtimestamp(int(at) / 1000, tz=UTC) if at else None,
        origin=origin.decode() if origin else None,
        job_id=job_id,
        task=task,
        payload=payload,
    )


async def list_dead(app: AppHandle, queue: str | None, limit: int) -> list[DeadLetter]:
    broker = app.broker
    queues = app.partitions.names(queue) if queue else await broker.dead_queues()
    out: list[DeadLetter] = []
    for q in queues:
        rows = await broker.read_dead(q, limit - len(out))
        out.extend(_parse(q, entry_id, fields) for entry_id, fields in rows)
        if len(out) >= limit:
            break
    return out


async def retry_dead(app: AppHandle, queue: str, ids: Sequence[str] | None) -> int:
    """Re-drive dead letters of ``queue`` (each partition's back to that partition)."""
    return sum([await _retry_dead(app, name, ids) for name in app.partitions.names(queue)])


async def _retry_dead(app: AppHandle, queue: str, ids: Sequence[str] | None) -> int:
    broker = app.broker
    if ids is None:
        rows = await broker.read_dead(queue, None)
    else:
        wanted = set(ids)
        rows = [
            row
            for i in ids
            for row in await broker.read_dead(queue, 1, start=i)
            if row[0].decode() in wanted
        ]
    letters = [_parse(queue, entry_id, fields) for entry_id, fields in rows]
    # Fresh records first: a re-driven message whose job is still marked failed
    # would be skipped as finished.
    await broker.requeue_jobs(
        [(d.job_id, d.task, queue) for d in letters if d.job_id and d.task],
        int(app.result_ttl * 1000),
    )
    return await broker.redrive(queue, [d.id for d in letters])


async def purge_dead(app: AppHandle, queue: str | None) -> int:
    broker = app.broker
    queues = app.partitions.names(queue) if queue else await broker.dead_queues()
    return sum([await broker.purge_dead(q) for q in queues])


class DeadLetters:
    """``App``'s dead-letter methods (a base class of it)."""

    url: str

    async def dead_letters(self, queue: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Dead-lettered messages of ``queue`` (default: every queue; a partitioned
        queue: each partition in turn), oldest first."""
        async with broker_errors(self.url):
            return await list_dead(self._app(), queue, limit)

    async def retry_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all of ``queue``'s when ``ids`` is None) back on their
        queue, as they were; their jobs start afresh. Returns how many moved.
        A partitioned queue's letters go back to their own partition; ``ids`` are
        looked for in each (name the partition, ``hot#3``, to look in one alone)."""
        async with broker_errors(self.url):
            return await retry_dead(self._app(), queue, ids)

    async def purge_dead(self, queue: str | None = None) -> int:
        """Delete the dead letters of ``queue`` (default: every queue); returns how many."""
        async with broker_errors(self.url):
            return await purge_dead(self._app(), queue)

    def _app(self) -> AppHandle:
        return self  # type: ignore[return-value]  # mixed into App only
