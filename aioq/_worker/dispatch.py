"""Handling each message a worker received: decode, start, execute, complete.

Every entry handed to ``Dispatcher.dispatch`` holds one concurrency slot;
whichever path it takes (run, skip, dead-letter, give back) releases it
exactly once, after its completion is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .._core.context import CURRENT_JOB, NO_STATE, Context, Running
from .._core.event import Note, ended, progress_detail
from .._core.message import (
    JobState,
    Message,
    Outcome,
    Progress,
    decode_outcome,
    encode,
    now_ms,
    open_message,
)
from .._core.options import CALL_FIELDS, Effective, TaskOptions, unwire
from .._core.registry import ArgumentError, TaskDef
from .._core.signing import BadSignature
from .._transport.connection import OUTAGE_ERRORS
from .._transport.types import Done, Entry, Finish, Start, Wrote
from .completer import persist
from .deploys import UnknownTasks
from .executor import run_attempt
from .failures import Failures
from .flow import Flow
from .lease import Lease, LeaseKeeper
from .limits import Deferral, Limits, describe, limited

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Mapping

    from .._core.hooks import Middleware
    from .._transport.broker import WorkerBroker
    from .completer import Completer
    from .host import WorkerHost
    from .tally import Tally

log = logging.getLogger("aioq.worker")
task_log = logging.getLogger("aioq.task")
"""One line per attempt's outcome (succeeded at INFO; failures and retries at WARNING)."""
_SUCCEEDED = JobState.SUCCEEDED.value
_FAILED = JobState.FAILED.value


class Dispatcher(LeaseKeeper, Failures, UnknownTasks):
    def __init__(
        self,
        app: WorkerHost,
        worker_id: str,
        streams: WorkerBroker,
        completer: Completer,
        threads: anyio.CapacityLimiter,
        release: Callable[[], None],
        on_defer: Callable[[int], None] = lambda delay_ms: None,
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self.streams = streams
        self.completer = completer
        self.threads = threads
        self.release = release
        self.flow = Flow(app, streams, completer)
        self.on_defer = on_defer
        """Told the delay (ms) of each message put back for a limit (wakes the pump)."""
        vt = app.settings.visibility_timeout
        self._vt_ms = int(vt * 1000)
        self.lease = Lease.for_timeout(vt)
        self.limits = Limits(streams, self._vt_ms, app.signer)
        self.inflight: dict[tuple[str, bytes], asyncio.Task[Any]] = {}
        """Entries running here, with the task running each."""
        self.unfinished: list[tuple[str, bytes]] = []
        """Entries whose task was cancelled (shutdown) before its completion was written."""
        self._taken_over: set[tuple[str, bytes]] = set()
        self._aborted: set[tuple[str, bytes]] = set()
        self._by_job: dict[str, tuple[str, bytes]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The executors' loop (``bind``): ``current_task(loop)`` skips a
        ``get_running_loop()``, a ``getpid`` system call per call on Python 3.11."""
        self._options: dict[tuple[str, str], Effective] = {}
        self.renewed_at = time.monotonic()
        """When every in-flight lease was last renewed (or known fresh)."""
        self.processed = 0
        """Attempts that ran to an outcome here (kept in memory; the heartbeat
        writes it to the worker's registry entry)."""
        self.failed = 0
        """…of which raised (retried or failed)."""
        self.tally: Tally | None = None
        """Per-task counters for ``/metrics`` (``--metrics-port``); None: not kept."""
        self.middleware: tuple[Middleware, ...] = ()
        """``@app.middleware``, outermost first (set by the worker; none: no cost)."""
        self.state: Mapping[str, Any] = NO_STATE
        """``ctx.state``: what the ``on_worker_start`` hooks returned (``lifespan.py``)."""

    # Executors are plain asyncio tasks in one asyncio.TaskGroup: per message, an
    # anyio task and cancel scope cost more than the whole no-op task (profiled).

    def bind(self, group: asyncio.TaskGroup) -> None:
        self._group = group
        self._loop = asyncio.get_running_loop()

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
                self._spawn(self._refuse(entry, msg, *reason))
            else:
                assert msg is not None and task is not None
                good.append((entry, msg, task))
        if any(limited(task) for _, _, task in good):
            good = await self._admit(good)
        if not good:
            return
        starts = [Start(m.id, m.task, m.queue, m.enqueued_ms) for _, m, _ in good]
        try:
            replies = await self.streams.start(self.worker_id, now_ms(), starts)
        except OUTAGE_ERRORS:
            # Nothing ran; the entries stay in our pending list and come back
            # through recovery once the lease lapses. Hand them back now instead.
            for entry, _, _ in good:
                self._spawn(self._give_back(entry))
            return
        for (entry, msg, task), reply in zip(good, replies, strict=True):
            if isinstance(reply, bytes):
                self._finished_already(entry, msg, reply)
                continue
            if isinstance(reply, Exception):
                # Not started, so it has no fencing token: it must not run here.
                log.warning("could not mark job %s started (%s); handing it back", msg.id, reply)
                self._spawn(self._give_back(entry))
                continue
            self._spawn(self._execute(entry, msg, task, int(reply)))

    def _finished_already(self, entry: Entry, msg: Message, outcome: bytes) -> None:
        """A message of a job that already ended (redelivered after its worker
        died before the ack, or aborted before it started): only what was not
        done yet (the workflow carried on, releases, the ack) is done."""
        log.info("job %s already ended; acking its message", msg.id)
        if msg.id in self.limits.slots:
            self._spawn(self.limits.release(msg.id))
        if msg.unique is not None:
            self._spawn(self._unlock(msg, self.app.result_ttl))
        self._spawn(self._settle(entry, msg, decode_outcome(outcome) if outcome else None))

    async def _admit(
        self, items: list[tuple[Entry, Message, TaskDef]]
    ) -> list[tuple[Entry, Message, TaskDef]]:
        """Jobs of rate-limited / ``max_running`` tasks ask admit.lua first; those
        that must wait go back to the delayed set (their slots are freed)."""
        limited_items = [item for item in items if limited(item[2])]
        try:
            decisions = await self.limits.admit(limited_items)
        except OUTAGE_ERRORS:
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
            due = await persist(
                lambda: self.streams.retry(
                    entry, self.worker_id, deferral.payload, deferral.delay_ms
                ),
                f"the deferral of job {msg.id}",
            )
            if due is not None:
                self.on_defer(deferral.delay_ms)
        finally:
            self.release()

    async def _unlock(self, msg: Message, result_ttl: float) -> None:
        unlock = self._unlock_args(msg, result_ttl)
        assert unlock is not None
        try:
            await self.streams.unlock(unlock[0], msg.id, unlock[1])
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
            # Signed apps: nothing unverified is decoded, so a forged message names
            # no job whose record could be failed (it only reaches the dead letters).
            msg = open_message(entry.payload, self.app.signer)
        except BadSignature as exc:
            return None, None, ("BadSignature", str(exc))
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
        current = asyncio.current_task(self._loop)
        assert current is not None
        self.inflight[key] = current
        self._by_job[msg.id] = key
        settled = False  # completion written, or the message belongs to someone else now
        try:
            opts = self._effective(task, msg)
            if msg.cont is not None and not opts.store_result:
                # the next step needs this result, also after a redelivery
                opts = msgspec.structs.replace(opts, store_result=True)
            mw = self.middleware
            ctx = self._context(msg, attempt, entry) if task.wants_context or mw else None
            CURRENT_JOB.set(Running(msg.id, msg.task, msg.queue, attempt))
            began = time.perf_counter()
            try:
                outcome, error = await run_attempt(
                    task, msg, ctx, opts, self.threads, self.app.sync_task_wrapper, mw
                )
            except ArgumentError as exc:
                reason = f"invalid arguments: {exc}"
                await self._dead_letter(entry, msg, "ArgumentError", reason, attempt)
                settled = True
                return
            retry = error is not None and self._retryable(task, msg, opts, error)
            self._count(msg, outcome, error, retry, time.perf_counter() - began)
            if retry:
                assert error is not None
                await self._retry(entry, msg, attempt, opts, outcome, error)
                settled = True
                return
            finish = self._finish(msg, attempt, outcome, opts.result_ttl)
            note = ended(msg.id, msg.task, attempt, outcome) if self.streams.events_maxlen else None
            if msg.cont is None:
                self._note(msg, await self.completer.submit(entry, finish, note))
            else:
                if ctx is not None and ctx.outgoing_headers() is not msg.headers:
                    # the next steps carry the headers as the task left them
                    msg = msgspec.structs.replace(msg, headers=ctx.outgoing_headers())
                await self._complete_step(entry, msg, finish, outcome, note)
            settled = True
        except asyncio.CancelledError:
            if key in self._aborted:
                # abort.lua already ended the job: what follows it ends too, then
                # only the message is left to ack.
                current.uncancel()
                log.info("job %s was aborted while running; cancelled it", msg.id)
                if self.tally is not None:
                    self.tally.outcome(msg.queue, msg.task, "aborted")
                await self._resume(entry, msg, Outcome(JobState.ABORTED.value, now_ms()))
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

    def _count(
        self, msg: Message, outcome: Outcome, error: BaseException | None, retry: bool, took: float
    ) -> None:
        """Count an attempt that ran (registry counters, ``/metrics``) and log a success."""
        self.processed += 1
        if error is not None:
            self.failed += 1
        elif outcome.state == _SUCCEEDED:
            task_log.info("task %s[%s] succeeded in %.3fs", msg.task, msg.id, took)
        if self.tally is not None:
            self.tally.ran(msg.queue, msg.task, _outcome(outcome, error, retry), took)

    def _context(self, msg: Message, attempt: int, entry: Entry) -> Context:
        async def report(job_id: str, payload: bytes) -> None:
            # fenced: a stale attempt's reports go nowhere (nor do their events)
            event = None
            if self.streams.events_maxlen:
                detail = progress_detail(msgspec.msgpack.decode(payload, type=Progress))
                event = (entry, Note("progress", job_id, msg.task, attempt, detail))
            await self.streams.progress(job_id, self.worker_id, attempt, payload, event)

        return Context(
            app=self.app,
            job_id=msg.id,
            task_name=msg.task,
            queue=msg.queue,
            attempt=attempt,
            worker_id=self.worker_id,
            report=report,
            state=self.state,
            headers=msg.headers,
        )

    async def _complete_step(
        self, entry: Entry, msg: Message, finish: Finish, outcome: Outcome, note: Note | None
    ) -> None:
        """A workflow step: its outcome (fenced), then what follows, then the ack.
        A step whose job had already ended (aborted while it ran) carries on from
        the stored outcome; one fenced out by a later attempt leaves it all to that
        attempt's worker."""
        wrote, stored = await self.completer.write_now(finish)
        if wrote == Wrote.FENCED:
            log.warning(
                "job %s was taken over by another worker; dropped this attempt's outcome", msg.id
            )
            return
        if wrote == Wrote.FINAL:
            outcome = decode_outcome(stored) if stored else outcome
        elif note is not None:  # before the follow-ups: the next step's events come after
            await self._event(msg.queue, note)
        await self.flow.ended(msg, outcome)
        self._note(msg, await self.completer.submit(entry, None))

    async def _event(self, queue: str, note: Note) -> None:
        """Write the event of a transition already made (its record is in another
        Cluster slot than the queue's events); a lost event is only logged."""
        try:
            await self.streams.write_events(self.worker_id, [(queue, note)])
        except Exception as exc:
            log.warning("could not write the %s event of job %s (%s)", note.kind, note.job_id, exc)

    @staticmethod
    def _note(msg: Message, done: Done) -> None:
        """Log a completion that another worker's takeover overruled (only those)."""
        if done.wrote == Wrote.FENCED or not done.acked:
            log.warning(
                "job %s was taken over by another worker while this one finished it; "
                "its outcome here was %s",
                msg.id,
                "dropped" if done.wrote == Wrote.FENCED else "kept, the other worker acks it",
            )

    def _effective(self, task: TaskDef, msg: Message) -> Effective:
        """Resolved options (``App.options_for``: call > task > rule > app); cached
        per task for the usual message with no overrides."""
        if (
            msg.timeout is None
            and msg.result_ttl is None
            and msg.store_result is None
            and msg.retries is None
        ):
            cached = self._options.get((task.name, msg.queue))  # by partition too
            if cached is None:
                cached = self._options[task.name, msg.queue] = self.app.options_for(
                    task.name, _call_options(msg)
                )
            return cached
        return self.app.options_for(task.name, _call_options(msg))

    def _finish(self, msg: Message, attempt: int, outcome: Outcome, ttl: float) -> Finish:
        if outcome.state == _FAILED and outcome.error is not None:
            err = outcome.error
            task_log.warning("task %s[%s] failed: %s: %s", msg.task, msg.id, err.type, err.message)
        return Finish(
            msg.id,
            attempt,
            outcome.state,
            encode(outcome),
            outcome.finished_ms,
            int(ttl * 1000),
            self._unlock_args(msg, ttl),
        )

    def _unlock_args(self, msg: Message, result_ttl: float) -> tuple[str, int] | None:
        """A unique job ended: free its ``unique_for`` lock, or keep an explicit job
        id's for as long as the result is kept: (lock key, ms to keep it or 0)."""
        if msg.unique is None:
            return None
        keep_ms = int(result_ttl * 1000) if msg.unique == msg.id else 0
        return (self.streams.unique_lock(msg.queue, msg.unique), keep_ms)

    async def _resume(self, entry: Entry, msg: Message, outcome: Outcome | None) -> None:
        """The job ended (its outcome is ``outcome``): make sure its workflow
        carried on from it (idempotent), then ack the message."""
        if msg.cont is not None and outcome is not None:
            await self.flow.ended(msg, outcome)
        self._note(msg, await self.completer.submit(entry, None))

    async def _settle(self, entry: Entry, msg: Message, outcome: Outcome | None) -> None:
        """``_resume`` for an entry that holds a slot but no executor."""
        try:
            await self._resume(entry, msg, outcome)
        finally:
            self.release()

    async def _give_back(self, entry: Entry) -> None:
        try:
            await self.streams.release(entry.stream, self.worker_id, [entry.id], self._vt_ms)
        except OUTAGE_ERRORS:
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


def _outcome(outcome: Outcome, error: BaseException | None, retry: bool) -> str:
    """The ``outcome`` label of ``aioq_jobs_total`` for one attempt."""
    if retry:
        return "retried"
    if error is not None:
        return "failed"
    return outcome.state


async def _guarded(coro: Coroutine[Any, Any, None]) -> None:
    """A bug in handling one message must not take the whole worker down."""
    try:
        await coro
    except Exception:
        log.exception("unexpected error while handling a message; the worker carries on")


def _call_options(msg: Message) -> TaskOptions:
    """The options the caller set on this message (``None`` fields were not set)."""
    return unwire({f: getattr(msg, f) for f in CALL_FIELDS if f != "priority"}, msg.queue)
