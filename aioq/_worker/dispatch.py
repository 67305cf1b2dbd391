"""Handling each message a worker received: decode, start, execute, complete.

Every entry handed to ``Dispatcher.dispatch`` holds one concurrency slot;
whichever path it takes (run, skip, dead-letter, give back) releases it
exactly once, after its completion is written.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .._core.context import Context
from .._core.message import (
    JobState,
    Message,
    Outcome,
    decode_message,
    decode_outcome,
    decode_value,
    encode,
    now_ms,
)
from .._core.options import Effective, TaskOptions, resolve
from .._core.registry import ArgumentError, TaskDef
from .._transport.connection import CONNECTION_ERRORS
from .._transport.streams import Entry, Finish, Start, Streams
from ..errors import Retry
from .completer import persist
from .executor import error_outcome, run_attempt
from .flow import Flow
from .lease import Lease, LeaseKeeper
from .limits import Deferral, Limits, describe, limited

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from ..app import App
    from .completer import Completer

log = logging.getLogger("aioq.worker")


class Dispatcher(LeaseKeeper):
    def __init__(
        self,
        app: App,
        worker_id: str,
        streams: Streams,
        completer: Completer,
        threads: anyio.CapacityLimiter,
        release: Callable[[], None],
        on_defer: Callable[[int], None] = lambda due_ms: None,
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self.streams = streams
        self.completer = completer
        self.threads = threads
        self.release = release
        self.flow = Flow(app, streams, completer)
        self.on_defer = on_defer
        """Told the due time (ms) of each message put back for a limit (wakes the pump)."""
        self._vt_ms = int(app.visibility_timeout * 1000)
        self.lease = Lease.for_timeout(app.visibility_timeout)
        self.limits = Limits(streams, self._vt_ms)
        self.inflight: dict[tuple[str, bytes], asyncio.Task[Any]] = {}
        """Entries running here, with the task running each."""
        self.unfinished: list[tuple[str, bytes]] = []
        """Entries whose task was cancelled (shutdown) before its completion was written."""
        self._taken_over: set[tuple[str, bytes]] = set()
        self._aborted: set[tuple[str, bytes]] = set()
        self._by_job: dict[str, tuple[str, bytes]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._options: dict[str, Effective] = {}
        self.renewed_at = time.monotonic()
        """When every in-flight lease was last renewed (or known fresh)."""

    # Executors are plain asyncio tasks in one asyncio.TaskGroup: per message, an
    # anyio task and cancel scope cost more than the whole no-op task (profiled).

    def bind(self, group: asyncio.TaskGroup) -> None:
        self._group = group

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._group is not None
        task = self._group.create_task(_guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_all(self) -> None:
        """Cancel every executor (grace period over, or a second signal)."""
        for task in self._tasks:
            task.cancel()

    async def dispatch(self, entries: list[Entry]) -> None:
        """Decode, mark started (skipping finished jobs), and start an executor each.

        Every entry arrives holding one slot; each path below releases it once.
        """
        good: list[tuple[Entry, Message, TaskDef]] = []
        for entry in entries:
            msg, task, reason = self._decode(entry)
            if reason is not None:
                self._spawn(self._reject(entry, msg, *reason))
            else:
                assert msg is not None and task is not None
                good.append((entry, msg, task))
        if any(limited(task) for _, _, task in good):
            good = await self._admit(good)
        if not good:
            return
        started = now_ms()
        ttl_ms = int(self.app.result_ttl * 1000)
        starts = [
            Start(
                self.app.keys.job(m.id),
                [self.worker_id, started, m.task, m.queue, m.enqueued_ms, ttl_ms],
            )
            for _, m, _ in good
        ]
        try:
            replies = await self.streams.start(starts)
        except CONNECTION_ERRORS:
            # Nothing ran; the entries stay in our pending list and come back
            # through recovery once the lease lapses. Hand them back now instead.
            for entry, _, _ in good:
                self._spawn(self._give_back(entry))
            return
        for (entry, msg, task), reply in zip(good, replies, strict=True):
            if isinstance(reply, bytes):
                self._finished_already(entry, msg, reply)
                continue
            if isinstance(reply, CONNECTION_ERRORS):  # BUSY, LOADING…: it may have ended
                self._spawn(self._give_back(entry))
                continue
            attempt = reply if isinstance(reply, int) else 1
            if isinstance(reply, Exception):
                log.warning("could not mark job %s started (%s); running it anyway", msg.id, reply)
            self._spawn(self._execute(entry, msg, task, attempt))

    def _finished_already(self, entry: Entry, msg: Message, outcome: bytes) -> None:
        """A redelivered message of a job that already ended: only what its
        worker did not get to (follow-ups, releases, the ack) is done."""
        log.info("job %s already finished; acking its redelivered message", msg.id)
        if msg.id in self.limits.slots:
            self._spawn(self.limits.release(msg.id))
        if msg.unique is not None:
            self._spawn(self._unlock(msg, self.app.result_ttl))
        if msg.cont is not None and outcome:
            self._spawn(self._resume(entry, msg, decode_outcome(outcome)))
        else:
            self._spawn(self._ack_only(entry))

    async def _admit(
        self, items: list[tuple[Entry, Message, TaskDef]]
    ) -> list[tuple[Entry, Message, TaskDef]]:
        """Jobs of rate-limited / ``max_running`` tasks ask admit.lua first; those
        that must wait go back to the delayed set (their slots are freed)."""
        limited_items = [item for item in items if limited(item[2])]
        try:
            decisions = await self.limits.admit(limited_items)
        except CONNECTION_ERRORS:
            for entry, _, _ in limited_items:
                self._spawn(self._give_back(entry))
            return [item for item in items if not limited(item[2])]
        waiting = {item[0].key: d for item, d in zip(limited_items, decisions, strict=True) if d}
        for entry, msg, _ in limited_items:
            deferral = waiting.get(entry.key)
            if deferral is not None:
                self._spawn(self._defer(entry, msg, deferral))
        return [item for item in items if item[0].key not in waiting]

    async def _defer(self, entry: Entry, msg: Message, deferral: Deferral) -> None:
        try:
            log.debug("%s", describe(deferral, msg))
            await persist(
                lambda: self.streams.retry(
                    entry, self.worker_id, deferral.payload, deferral.due_ms
                ),
                f"the deferral of job {msg.id}",
            )
            self.on_defer(deferral.due_ms)
        finally:
            self.release()

    async def _unlock(self, msg: Message, result_ttl: float) -> None:
        args = self._unlock_args(msg, result_ttl)
        assert args is not None
        try:
            await self.streams.unlock(*args)
        except Exception as exc:  # the lock's own TTL ends it instead
            log.warning("could not release the unique lock of job %s (%s)", msg.id, exc)

    def _decode(
        self, entry: Entry
    ) -> tuple[Message | None, TaskDef | None, tuple[str, str] | None]:
        """The message and its task, or why it cannot run: (error type, reason)."""
        if entry.payload is None:
            return None, None, ("UndecodableMessage", "undecodable message: no 'm' field")
        if len(entry.payload) > self.app.max_message_bytes:
            reason = (
                f"message too large: {len(entry.payload)} bytes, over "
                f"max_message_bytes={self.app.max_message_bytes}"
            )
            return None, None, ("MessageTooLarge", reason)
        try:
            msg = decode_message(entry.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return None, None, ("UndecodableMessage", f"undecodable message: {exc}")
        task = self.app.registry.get(msg.task)
        if task is None:
            reason = f"unknown task {msg.task!r}: no task of that name is registered"
            return msg, None, ("UnknownTask", reason)
        limit = self._effective(task, msg).max_deliveries
        if entry.deliveries > limit:
            reason = (
                f"delivered {entry.deliveries} times, over max_deliveries={limit}: "
                "it may be crashing or stalling its workers"
            )
            return msg, task, ("MaxDeliveries", reason)
        return msg, task, None

    # -- executors -------------------------------------------------------------

    async def _execute(self, entry: Entry, msg: Message, task: TaskDef, attempt: int) -> None:
        key = entry.key
        current = asyncio.current_task()
        assert current is not None
        self.inflight[key] = current
        self._by_job[msg.id] = key
        settled = False  # completion written, or the message belongs to someone else now
        try:
            opts = self._effective(task, msg)
            if msg.cont is not None and not opts.store_result:
                # the next step needs this result, also after a redelivery
                opts = msgspec.structs.replace(opts, store_result=True)
            ctx = (
                Context(
                    app=self.app,
                    job_id=msg.id,
                    task_name=msg.task,
                    queue=msg.queue,
                    attempt=attempt,
                    worker_id=self.worker_id,
                    report=self.app._transport.report_progress,
                )
                if task.wants_context
                else None
            )
            try:
                outcome, error = await run_attempt(task, msg, ctx, opts, self.threads)
            except ArgumentError as exc:
                await self._dead_letter(entry, msg, "ArgumentError", f"invalid arguments: {exc}")
                settled = True
                return
            if error is not None and self._retryable(task, msg, opts, error):
                await self._retry(entry, msg, opts, outcome, error)
                settled = True
                return
            finish = self._finish(entry, msg, outcome, opts.result_ttl)
            if msg.cont is None:
                await self.completer.submit(entry.stream, entry.id, finish)
            else:
                # A workflow step: outcome, then what follows, then the ack.
                await self.completer.write_now(finish)
                await self._follow(msg, outcome)
                await self.completer.submit(entry.stream, entry.id, None)
            settled = True
        except asyncio.CancelledError:
            if key in self._aborted:
                # abort.lua already ended the job; only the message is left to ack.
                current.uncancel()
                log.info("job %s was aborted while running; cancelled it", msg.id)
                await self.completer.submit(entry.stream, entry.id, None)
                settled = True
            elif key in self._taken_over:
                current.uncancel()  # lost the lease: another worker runs it now
                settled = True
                log.warning("job %s was taken over by another worker; stopped it here", msg.id)
            else:
                raise  # shutdown: the message is handed back by the worker
        finally:
            if msg.id in self.limits.slots:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                    await self.limits.release(msg.id)
            self.inflight.pop(key, None)
            self._by_job.pop(msg.id, None)
            self._taken_over.discard(key)
            self._aborted.discard(key)
            if not settled:
                self.unfinished.append(key)
            self.release()

    @staticmethod
    def _retryable(task: TaskDef, msg: Message, opts: Effective, error: BaseException) -> bool:
        if msg.retry >= opts.retries:
            return False  # used up: the job fails with this error
        return isinstance(error, (Retry, *task.retry_on))

    async def _retry(
        self, entry: Entry, msg: Message, opts: Effective, outcome: Outcome, error: BaseException
    ) -> None:
        """Schedule the next attempt after the backoff, acking this one atomically.

        The record says ``retrying`` (with the last error) first: a crash before
        the retry is scheduled redelivers this message, which just runs again.
        """
        number = msg.retry + 1
        if isinstance(error, Retry) and error.delay is not None:
            delay = max(0.0, error.delay)
        else:
            delay = opts.backoff(number, random.random())
        due = now_ms() + int(delay * 1000)
        ttl_ms = int((delay + opts.result_ttl) * 1000)
        last = encode(outcome.error)
        log.warning(
            "job %s failed (%s: %s); retry %d of %d in %.2fs",
            msg.id,
            type(error).__name__,
            error,
            number,
            opts.retries,
            delay,
        )
        await persist(
            lambda: self.streams.mark(msg.id, "retrying", ttl_ms, "error", last, "due_ms", due),
            f"the retry state of job {msg.id}",
        )
        # a new attempt: it queues for rate slots and max_running afresh
        payload = encode(msgspec.structs.replace(msg, retry=number, reserved=False, waits=0))
        owned = await persist(
            lambda: self.streams.retry(entry, self.worker_id, payload, due),
            f"the retry of job {msg.id}",
        )
        if not owned:
            log.warning("job %s was taken over by another worker; not scheduling its retry", msg.id)

    def _effective(self, task: TaskDef, msg: Message) -> Effective:
        """Resolved options; cached per task for the usual message with no overrides."""
        if (
            msg.timeout is None
            and msg.result_ttl is None
            and msg.store_result is None
            and msg.retries is None
        ):
            cached = self._options.get(task.name)
            if cached is None or cached.queue != msg.queue:
                cached = self._options[task.name] = resolve(
                    self.app.defaults(), task.options, _call_options(msg)
                )
            return cached
        return resolve(self.app.defaults(), task.options, _call_options(msg))

    def _finish(self, entry: Entry, msg: Message, outcome: Outcome, ttl: float) -> Finish:
        if outcome.state == JobState.FAILED.value and outcome.error is not None:
            log.warning("job %s failed: %s: %s", msg.id, outcome.error.type, outcome.error.message)
        return Finish(
            entry.stream,
            entry.id,
            msg.id,
            outcome.state,
            encode(outcome),
            outcome.finished_ms,
            int(ttl * 1000),
            self._unlock_args(msg, ttl),
        )

    def _unlock_args(self, msg: Message, result_ttl: float) -> tuple[str, str, int] | None:
        """A unique job ended: free its ``unique_for`` lock, or keep an explicit job
        id's for as long as the result is kept."""
        if msg.unique is None:
            return None
        keep_ms = int(result_ttl * 1000) if msg.unique == msg.id else 0
        return (self.app.keys.unique(msg.queue, msg.unique), msg.id, keep_ms)

    async def _reject(self, entry: Entry, msg: Message | None, kind: str, reason: str) -> None:
        try:
            await self._dead_letter(entry, msg, kind, reason)
        finally:
            self.release()

    async def _dead_letter(self, entry: Entry, msg: Message | None, kind: str, reason: str) -> None:
        """Dead-letter a message that cannot run, failing its job so waiters learn why."""
        log.error(
            "dead-lettering message %s of queue %r: %s", entry.id.decode(), entry.queue, reason
        )
        try:
            # Dead letter first, then the job's record: a crash in between leaves
            # the message safe in the dead-letter stream (re-drivable); the other
            # order could leave a failed record that makes the redelivered
            # message look finished, and it would never reach the dead letters.
            await self.streams.dead_letter(entry, reason, self.app.dead_letter_maxlen, now_ms())
            if msg is not None:
                outcome = error_outcome(kind, reason)
                await self.completer.write_now(
                    self._finish(entry, msg, outcome, self.app.result_ttl)
                )
                if msg.cont is not None and outcome.error is not None:
                    await self.flow.failed(msg, outcome.error)
        except CONNECTION_ERRORS as exc:
            log.warning("could not dead-letter %s (%s); it will be retried", entry.id, exc)

    async def _follow(self, msg: Message, outcome: Outcome) -> None:
        assert msg.cont is not None
        if outcome.state == JobState.SUCCEEDED.value:
            await self.flow.succeeded(msg.cont, decode_value(outcome.result))
        elif outcome.error is not None:
            await self.flow.failed(msg, outcome.error)

    async def _resume(self, entry: Entry, msg: Message, outcome: Outcome) -> None:
        """A finished workflow step came back (its worker died before the ack):
        make sure what follows it was sent, then ack."""
        try:
            await self._follow(msg, outcome)
            await self.completer.submit(entry.stream, entry.id, None)
        finally:
            self.release()

    async def _ack_only(self, entry: Entry) -> None:
        try:
            await self.completer.submit(entry.stream, entry.id, None)
        finally:
            self.release()

    async def _give_back(self, entry: Entry) -> None:
        try:
            await self.streams.release(entry.stream, self.worker_id, [entry.id], self._vt_ms)
        except CONNECTION_ERRORS:
            pass
        finally:
            self.release()

    # -- abort -----------------------------------------------------------------

    def abort(self, job_id: str) -> None:
        """Cancel the job's task if it runs here (its record already says aborted)."""
        key = self._by_job.get(job_id)
        task = self.inflight.get(key) if key is not None else None
        if key is not None and task is not None and key not in self._aborted:
            self._aborted.add(key)
            task.cancel()

    async def abort_listener(self) -> None:
        async for job_id in self.streams.abort_requests():
            self.abort(job_id)

    async def check_aborted(self) -> None:
        """Fallback for an abort announced while the listener was disconnected."""
        jobs = list(self._by_job)
        if jobs:
            for job_id, state in zip(jobs, await self.streams.states(jobs), strict=True):
                if state == b"aborted":
                    self.abort(job_id)


async def _guarded(coro: Coroutine[Any, Any, None]) -> None:
    """A bug in handling one message must not take the whole worker down."""
    try:
        await coro
    except Exception:
        log.exception("unexpected error while handling a message; the worker carries on")


def _call_options(msg: Message) -> TaskOptions:
    """The options the caller set on this message (``None`` fields were not set)."""
    return TaskOptions(
        queue=msg.queue,
        timeout=msgspec.UNSET if msg.timeout is None else msg.timeout,
        result_ttl=msgspec.UNSET if msg.result_ttl is None else msg.result_ttl,
        store_result=msgspec.UNSET if msg.store_result is None else msg.store_result,
        retries=msgspec.UNSET if msg.retries is None else msg.retries,
    )
