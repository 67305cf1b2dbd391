"""Carrying workflows forward: after a step ends, send what follows it.

Runs after the step's outcome is written and before its message is acked, so
a crash in between redelivers the message and this runs again; every send is
deduplicated on the follow-up's deterministic job id, and group barriers
count members by index, so each follow-up runs once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .._core.canvas import Cont, Launch, barriers, complete, downstream
from .._core.message import (
    ErrorInfo,
    JobState,
    Outcome,
    decode_value,
    encode,
    launch_message,
    now_ms,
)
from .._transport.types import Finish
from .completer import persist

if TYPE_CHECKING:
    from .._core.canvas import Join
    from .._core.message import Message
    from .._transport.broker import WorkerBroker
    from .completer import Completer
    from .host import WorkerHost

log = logging.getLogger("aioq.worker")

FOLLOW_UP_MAX_BYTES = 64 << 20


def ended_outcome(msg: Message, state: JobState, error: ErrorInfo | None, now: int) -> bytes:
    """The outcome given to every job of a workflow that can no longer run because
    step ``msg`` ended ``state`` (failed: with its error, naming the step)."""
    if error is None:
        return encode(Outcome(state.value, now))
    note = ErrorInfo(
        error.type, f"step {msg.task} (job {msg.id}) failed: {error.message}", error.traceback
    )
    return encode(Outcome(state.value, now, error=note))


def on_error_launch(msg: Message, error: ErrorInfo) -> Launch | None:
    """The workflow's ``on_error`` handler, called for step ``msg`` that failed."""
    assert msg.cont is not None
    if msg.cont.on_error is None:
        return None
    details = {"type": error.type, "message": error.message, "traceback": error.traceback}
    return Launch(f"{msg.id}-on-error", msg.cont.on_error, [msg.id, details], Cont())


class Flow:
    def __init__(self, app: WorkerHost, streams: WorkerBroker, completer: Completer) -> None:
        self.app = app
        self.streams = streams
        self.completer = completer
        self._ttl_ms = int(app.result_ttl * 1000)

    async def succeeded(
        self, cont: Cont, result: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Send what follows a step that returned ``result`` (carrying ``headers``)."""
        pending = complete(result, cont)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Launch):
                await self._launch(action, headers)
                continue
            join, raw = action.join, encode(action.value)

            async def record(join: Join = join, raw: bytes = raw) -> list[bytes] | None:
                return await self.streams.join(
                    join.barrier, join.index, raw, join.size, self._ttl_ms
                )

            values = await persist(record, f"group {join.barrier} member {join.index}")
            if values is not None:  # the whole group is in: carry its results on
                pending.extend(complete([decode_value(v) for v in values], join.outer))

    async def ended(self, msg: Message, outcome: Outcome) -> None:
        """Carry the workflow of ``msg`` on from its job's final ``outcome``.

        Called only once that outcome is final in the job's record (written by
        this attempt, or found there), and it depends on nothing but that
        outcome: a stale worker that gets here can only send what the job's
        owner sends too, and every send is deduplicated."""
        assert msg.cont is not None
        if outcome.state == JobState.SUCCEEDED.value:
            await self.succeeded(msg.cont, decode_value(outcome.result), msg.headers)
        elif outcome.state == JobState.ABORTED.value:
            await self._end(msg, JobState.ABORTED, None)
        else:
            error = outcome.error or ErrorInfo("Error", f"job ended {outcome.state}")
            await self._end(msg, JobState.FAILED, error)

    async def _end(self, msg: Message, state: JobState, error: ErrorInfo | None) -> None:
        """The workflow ends at this step: every job that can no longer run ends
        the same way (so whoever awaits the workflow's handle learns why at
        once), group barriers it would have reported to are closed (their
        callbacks never run), and a failure launches ``on_error``."""
        assert msg.cont is not None
        now = now_ms()
        payload = ended_outcome(msg, state, error, now)
        for barrier in barriers(msg.cont):
            await persist(
                lambda barrier=barrier: self.streams.end_group(barrier, self._ttl_ms),  # type: ignore[misc]
                f"the end of group {barrier}",
            )
        for job_id in downstream(msg.cont):
            # attempt 0: none of them ever started; first writer wins as ever
            await self.completer.write_now(
                Finish(job_id, 0, state.value, payload, now, self._ttl_ms)
            )
        handler = on_error_launch(msg, error) if error is not None else None
        if handler is not None:
            await self._launch(handler, msg.headers)

    async def _launch(self, action: Launch, headers: dict[str, str] | None) -> None:
        # Follow-ups carry earlier results (a chord callback: all of them), so
        # they may exceed the limit set for callers' own messages.
        limit = max(self.app.max_message_bytes, FOLLOW_UP_MAX_BYTES)
        # the partition of its id: deterministic, so a redelivered step re-sends
        # to the same partition (and the same once-marker) as the first send
        queue = self.app.partitions.pick(action.sig.queue, action.job_id)
        payload = launch_message(action, limit, headers, self.app.signer, queue)
        await persist(
            lambda: self.streams.enqueue_once(
                queue,
                action.sig.options.get("priority", 0),
                action.job_id,
                payload,
                self._ttl_ms,
            ),
            f"workflow job {action.job_id}",
        )
