"""Rolling deploys: a message for a task this worker does not know is handed back
for ``unknown_task_grace`` seconds, so that a worker running newer code can take
it, before it is dead-lettered (docs/deploys.md).

The window is measured by Redis' clock: from the time in the stream entry id of
the first delivery that found the task unknown (carried on in the message as
``unknown_since_ms``) to the time in the id of the current one. Handing back is
``retry.lua`` (fenced: only while this delivery holds the entry): the message
waits ``HAND_BACK`` seconds in its queue's delayed set, then any worker may read
it again, as a fresh delivery (its ``max_deliveries`` count starts over).

Part of ``Dispatcher`` (a base class of it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from .._core.message import encode
from .completer import persist

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._core.message import Message
    from .._transport.broker import WorkerBroker
    from .._transport.types import Entry

log = logging.getLogger("aioq.worker")

HAND_BACK = 1.0
"""Seconds a handed-back message waits before it is read again (at most the grace)."""


def entry_ms(entry: Entry) -> int:
    """Redis' time (ms) when the entry was added to its stream, from its id."""
    return int(entry.id.split(b"-", 1)[0])


class UnknownTasks:
    worker_id: str
    streams: WorkerBroker
    release: Callable[[], None]
    on_defer: Callable[[int], None]
    unknown_task_grace_ms: int = 60_000
    """0: dead-letter a message for an unknown task at once."""
    _unknown_seen: set[str] | None = None

    async def _reject(self, entry: Entry, msg: Message | None, kind: str, reason: str) -> None:
        raise NotImplementedError  # Failures._reject (before this class in Dispatcher's bases)

    async def _refuse(self, entry: Entry, msg: Message | None, kind: str, reason: str) -> None:
        """A message that cannot run here: hand one of an unknown task back while
        its window lasts, dead-letter it (and anything else) otherwise."""
        grace_ms = self.unknown_task_grace_ms
        if kind != "UnknownTask" or msg is None or grace_ms <= 0:
            await self._reject(entry, msg, kind, reason)
            return
        now = entry_ms(entry)
        first = msg.unknown_since_ms or now
        if now - first >= grace_ms:
            reason = (
                f"{reason}; no worker that knows it took it within "
                f"unknown_task_grace={grace_ms / 1000:g}s"
            )
            await self._reject(entry, msg, kind, reason)
            return
        try:
            self._note_unknown(msg.task, grace_ms)
            delay_ms = min(int(HAND_BACK * 1000), grace_ms)
            payload = encode(msgspec.structs.replace(msg, unknown_since_ms=first))
            due = await persist(
                lambda: self.streams.retry(entry, self.worker_id, payload, delay_ms),
                f"the hand-back of job {msg.id}",
            )
            if due is not None:
                self.on_defer(delay_ms)
        finally:
            self.release()

    def _note_unknown(self, task: str, grace_ms: int) -> None:
        """One warning per task name and worker, not one per message."""
        seen = self._unknown_seen
        if seen is None:
            seen = self._unknown_seen = set()
        if task not in seen and len(seen) < 1000:
            seen.add(task)
            log.warning(
                "task %r is not registered in this worker; handing its messages back "
                "for up to %gs for a worker that knows it (a rolling deploy?), then "
                "dead-lettering them",
                task,
                grace_ms / 1000,
            )
