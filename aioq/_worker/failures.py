"""How a message ends when its attempt fails: a retry after a backoff, or a dead
letter (it cannot run at all). Both are fenced writes (docs/reliability.md).

Part of ``Dispatcher`` (a base class of it).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import msgspec

from .._core.event import Note, error_detail
from .._core.message import Message, Outcome, decode_outcome, encode, now_ms, pack
from .._transport.types import Wrote
from ..errors import Retry
from .completer import persist
from .executor import error_outcome

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._core.options import Effective
    from .._core.registry import TaskDef
    from .._transport.broker import WorkerBroker
    from .._transport.types import Entry, Finish
    from .completer import Completer
    from .flow import Flow
    from .host import WorkerHost

log = logging.getLogger("aioq.worker")
task_log = logging.getLogger("aioq.task")


class Failures:
    app: WorkerHost
    worker_id: str
    streams: WorkerBroker
    completer: Completer
    flow: Flow
    release: Callable[[], None]

    def _finish(self, msg: Message, attempt: int, outcome: Outcome, ttl: float) -> Finish:
        raise NotImplementedError

    async def _resume(self, entry: Entry, msg: Message, outcome: Outcome | None) -> None:
        raise NotImplementedError

    @staticmethod
    def _retryable(task: TaskDef, msg: Message, opts: Effective, error: BaseException) -> bool:
        if msg.retry >= opts.retries:
            return False  # used up: the job fails with this error
        return isinstance(error, (Retry, *task.retry_on))

    async def _retry(
        self,
        entry: Entry,
        msg: Message,
        attempt: int,
        opts: Effective,
        outcome: Outcome,
        error: BaseException,
    ) -> None:
        """Schedule the next attempt after the backoff, acking this one atomically.

        The record says ``retrying`` (with the last error) first: a crash before
        the retry is scheduled redelivers this message, which just runs again.
        Both writes are fenced; due times are Redis' clock plus the delay.
        """
        number = msg.retry + 1
        if isinstance(error, Retry) and error.delay is not None:
            delay = max(0.0, error.delay)
        else:
            delay = opts.backoff(number, random.random())
        delay_ms = int(delay * 1000)
        ttl_ms = int(opts.result_ttl * 1000)
        assert outcome.error is not None
        last = encode(outcome.error)
        task_log.warning(
            "task %s[%s] retrying in %.1fs (retry %d of %d): %s: %s",
            msg.task,
            msg.id,
            delay,
            number,
            opts.retries,
            outcome.error.type,
            outcome.error.message,
        )
        marked = await persist(
            lambda: self.streams.mark_retrying(
                msg.id, self.worker_id, attempt, last, delay_ms, ttl_ms
            ),
            f"the retry state of job {msg.id}",
        )
        if marked == Wrote.FENCED:
            log.warning("job %s was taken over by another worker; not retrying it here", msg.id)
            return
        if marked == Wrote.FINAL:  # aborted meanwhile: nothing more to run
            await self._resume(entry, msg, None)
            return
        # a new attempt: it queues for rate slots and max_running afresh
        payload = pack(
            msgspec.structs.replace(msg, retry=number, reserved=False, waits=0), self.app.signer
        )
        why = error_detail(outcome.error.type, outcome.error.message)
        detail = f"retry {number} of {opts.retries} in {delay:.1f}s: {why}"
        note = Note("retrying", msg.id, msg.task, attempt, detail)
        due = await persist(
            lambda: self.streams.retry(entry, self.worker_id, payload, delay_ms, note),
            f"the retry of job {msg.id}",
        )
        if due is None:
            log.warning("job %s was taken over by another worker; not scheduling its retry", msg.id)

    async def _reject(self, entry: Entry, msg: Message | None, kind: str, reason: str) -> None:
        try:
            await self._dead_letter(entry, msg, kind, reason, 0)
        finally:
            self.release()

    async def _dead_letter(
        self, entry: Entry, msg: Message | None, kind: str, reason: str, attempt: int
    ) -> None:
        """Dead-letter a message that cannot run, failing its job so waiters learn
        why (``attempt`` 0: it never started here)."""
        log.error(
            "dead-lettering message %s of queue %r: %s", entry.id.decode(), entry.queue, reason
        )
        # Dead letter first, then the job's record: a crash in between leaves
        # the message safe in the dead-letter stream (re-drivable); the other
        # order could leave a failed record that makes the redelivered message
        # look finished, and it would never reach the dead letters.
        note = Note("dead", msg.id if msg else "", msg.task if msg else "", attempt)
        moved = await persist(
            lambda: self.streams.dead_letter(
                entry, self.worker_id, reason, self.app.settings.dead_letter_maxlen, now_ms(), note
            ),
            f"the dead letter of message {entry.id.decode()}",
        )
        if not moved:
            log.warning("message %s was taken over by another worker; left it", entry.id.decode())
            return
        tally = getattr(self, "tally", None)
        if tally is not None:
            tally.outcome(entry.queue, msg.task if msg is not None else "", "dead_lettered")
        if msg is not None:
            outcome = error_outcome(kind, reason)
            wrote, stored = await self.completer.write_now(
                self._finish(msg, attempt, outcome, self.app.result_ttl)
            )
            if msg.cont is not None and wrote != Wrote.FENCED:
                await self.flow.ended(msg, decode_outcome(stored) if stored else outcome)
