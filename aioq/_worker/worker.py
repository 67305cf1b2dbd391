"""The worker: reads messages through the consumer group and runs them.

Shape of one worker process (one event loop)::

    run()
    ├── reader      reserve free slots → XAUTOCLAIM (now and then) or XREADGROUP
    │               → decode → start.lua (skip finished jobs) → spawn executors
    ├── executors   one task per message, at most ``concurrency`` at once
    │               → run_attempt → completer.submit (slot held until written)
    ├── completer   outcome + ack + publish for a whole tick in one pipeline
    ├── heartbeat   renews the lease on every in-flight entry (renew.lua)
    └── signals     first SIGTERM/SIGINT: drain; second: cancel at once
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import time
import uuid
from typing import TYPE_CHECKING

import anyio
import msgspec
from redis import exceptions as rex

from .._core.context import Context
from .._core.message import JobState, Message, Outcome, decode_message, encode, now_ms
from .._core.options import TaskOptions, resolve
from .._core.registry import ArgumentError, TaskDef
from .._transport.connection import CONNECTION_ERRORS, connect, wait_until_reachable
from .._transport.scripts import SCRIPTS
from .._transport.streams import Entry, Finish, Start, Streams
from .completer import Completer
from .executor import error_outcome, run_attempt

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskGroup, TaskStatus

    from ..app import App

log = logging.getLogger("aioq.worker")


class Worker:
    """Runs tasks of ``app`` from ``queues`` with at most ``concurrency`` at once.

    Args:
        app: the app whose registered tasks this worker runs.
        queues: queues to consume; default: the app's default queue and every
            queue a registered task names.
        concurrency: most messages held (running or being completed) at once.
        grace: seconds in-flight tasks get to finish after a stop request.
        connect_timeout: seconds to keep retrying an unreachable Redis at start.
        block: seconds one XREADGROUP waits for new messages.
    """

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 100,
        grace: float = 30.0,
        connect_timeout: float = 30.0,
        block: float = 1.0,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.app = app
        self.queues = list(dict.fromkeys(queues or app.queues()))
        self.concurrency = concurrency
        self.grace = grace
        self.connect_timeout = connect_timeout
        self.block_ms = max(1, int(block * 1000))
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._free = concurrency
        self._reading = 0  # slots reserved by the read in progress
        self._slot_freed = anyio.Event()
        self._inflight: dict[tuple[str, bytes], anyio.CancelScope] = {}
        self._unfinished: list[tuple[str, bytes]] = []
        self._stopping = False
        self.ready = anyio.Event()
        """Set once the worker has connected, created its groups and started reading."""
        self._exec_scope: anyio.CancelScope | None = None
        self._rotate = 0
        self._claim_cursors = {q: b"0-0" for q in self.queues}
        self._next_claim = 0.0
        self._threads = anyio.CapacityLimiter(concurrency)
        self._vt_ms = int(app.visibility_timeout * 1000)
        self._streams: Streams
        self._completer: Completer

    # -- control ---------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading; in-flight tasks get ``grace`` seconds to finish."""
        self._stopping = True
        self._release_slot_waiters()

    def kill(self) -> None:
        """Stop now: cancel in-flight tasks (their messages are left for other workers)."""
        self.stop()
        if self._exec_scope is not None:
            self._exec_scope.cancel()

    @property
    def running(self) -> int:
        """Messages held right now (running or waiting for their completion write)."""
        return self.concurrency - self._free - self._reading

    # -- main ------------------------------------------------------------------

    async def run(
        self,
        *,
        handle_signals: bool = False,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until stopped. With ``handle_signals``, SIGTERM/SIGINT stop it."""
        redis = connect(self.app.url, **self.app.redis_options)
        try:
            await wait_until_reachable(redis, self.app.url, self.connect_timeout)
            await SCRIPTS.load_all(redis)
            self._streams = Streams(redis, self.app.keys)
            self._completer = Completer(self._streams)
            for queue in self.queues:
                await self._streams.ensure_group(queue)
            self._log_startup()
            async with anyio.create_task_group() as services:
                if handle_signals:
                    services.start_soon(self._handle_signals)
                services.start_soon(self._completer.run)
                services.start_soon(self._heartbeat)
                with anyio.CancelScope() as self._exec_scope:
                    async with anyio.create_task_group() as executors:
                        task_status.started()
                        self.ready.set()
                        await self._read_loop(executors)
                        await self._drain()
                await self._release_unfinished()
                services.cancel_scope.cancel()
            await self._forget_self()
        finally:
            await redis.aclose()
        log.info("worker %s stopped", self.id)

    def _log_startup(self) -> None:
        for queue in self.queues:
            log.info(
                "worker %s consuming queue %r (%s)", self.id, queue, self.app.keys.stream(queue)
            )
        names = self.app.registry.names()
        log.info(
            "%d task(s) registered: %s; concurrency %d",
            len(names),
            ", ".join(names) or "-",
            self.concurrency,
        )

    async def _handle_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if not self._stopping:
                    log.info(
                        "received %s: finishing %d in-flight task(s) within %gs "
                        "(send again to stop at once)",
                        signal.Signals(signum).name,
                        self.running,
                        self.grace,
                    )
                    self.stop()
                else:
                    log.warning(
                        "received %s again: cancelling %d in-flight task(s)",
                        signal.Signals(signum).name,
                        self.running,
                    )
                    self.kill()

    async def _drain(self) -> None:
        """Wait for in-flight work to complete, at most ``grace`` seconds."""
        with anyio.move_on_after(self.grace):
            while self._free < self.concurrency:
                await self._slot_freed.wait()
        if self._free < self.concurrency and self._exec_scope is not None:
            log.warning(
                "grace period over: cancelling %d task(s); their messages go to other workers",
                self.concurrency - self._free,
            )
            self._exec_scope.cancel()

    # -- slots -----------------------------------------------------------------

    def _release_slot_waiters(self) -> None:
        self._slot_freed.set()
        self._slot_freed = anyio.Event()

    def _release(self, n: int = 1) -> None:
        self._free += n
        self._release_slot_waiters()

    async def _reserve(self) -> int:
        """Take every free slot (waiting for one if none is free); 0 when stopping."""
        while self._free == 0 and not self._stopping:
            await self._slot_freed.wait()
        if self._stopping:
            return 0
        n, self._free = self._free, 0
        return n

    # -- reading ---------------------------------------------------------------

    async def _read_loop(self, executors: TaskGroup) -> None:
        outage = False
        while True:
            n = await self._reserve()
            if n == 0:
                return
            self._reading = n
            try:
                entries = await self._fetch(n)
            except CONNECTION_ERRORS as exc:
                self._release(n)
                if not outage:
                    log.warning("lost Redis while reading (%s); retrying", exc)
                    outage = True
                await anyio.sleep(0.5)
                continue
            except rex.ResponseError as exc:
                self._release(n)
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer group missing (Redis lost its data?); recreating it")
                for queue in self.queues:
                    await self._streams.ensure_group(queue)
                continue
            finally:
                self._reading = 0
            if outage:
                log.info("Redis is reachable again; reading resumed")
                outage = False
            if len(entries) < n:
                self._release(n - len(entries))
            if entries:
                await self._dispatch(entries, executors)

    async def _fetch(self, n: int) -> list[Entry]:
        """Up to ``n`` entries: a dead worker's, when a recovery pass is due, else new ones."""
        if time.monotonic() >= self._next_claim:
            every = max(0.05, self.app.visibility_timeout / 4)
            self._next_claim = time.monotonic() + every * random.uniform(0.75, 1.25)
            entries = await self._claim(n)
            if entries:
                return entries
        return await self._read(n)

    async def _read(self, n: int) -> list[Entry]:
        """Up to ``n`` new entries. COUNT applies per stream, so a blocking read of
        every queue asks each for ``n // queues``; with fewer free slots than
        queues, each queue is looked at in turn without blocking instead, so one
        read never returns more than the ``n`` free slots."""
        start = self._rotate % len(self.queues)
        self._rotate += 1
        queues = self.queues[start:] + self.queues[:start]
        if n >= len(queues):
            return await self._streams.read(self.id, queues, n // len(queues), self.block_ms)
        for queue in queues:
            entries = await self._streams.read(self.id, [queue], n, None)
            if entries:
                return entries
        with anyio.move_on_after(self.block_ms / 1000):
            await self._slot_freed.wait()  # more free slots: a blocking read becomes possible
        return []

    async def _claim(self, n: int) -> list[Entry]:
        """Take over entries idle longer than the visibility timeout (a dead worker's)."""
        claimed: list[Entry] = []
        for queue in self.queues:
            if len(claimed) >= n:
                break
            cursor, entries, deleted = await self._streams.autoclaim(
                queue, self.id, self._vt_ms, self._claim_cursors[queue], n - len(claimed)
            )
            self._claim_cursors[queue] = cursor
            if deleted:
                log.warning(
                    "%d pending message(s) of queue %r were deleted before they were processed",
                    len(deleted),
                    queue,
                )
            if entries:
                log.warning(
                    "recovered %d message(s) of queue %r from a worker that stopped "
                    "renewing its lease",
                    len(entries),
                    queue,
                )
            claimed.extend(entries)
        return claimed

    # -- dispatch --------------------------------------------------------------

    async def _dispatch(self, entries: list[Entry], executors: TaskGroup) -> None:
        """Decode, mark started (skipping finished jobs), and start an executor each.

        Every entry arrives holding one slot; each path below releases it once.
        """
        good: list[tuple[Entry, Message, TaskDef]] = []
        for entry in entries:
            msg, task, reason = self._decode(entry)
            if reason is not None:
                executors.start_soon(self._reject, entry, msg, reason)
            else:
                assert msg is not None and task is not None
                good.append((entry, msg, task))
        if not good:
            return
        started = now_ms()
        ttl_ms = int(self.app.result_ttl * 1000)
        starts = [
            Start(
                self.app.keys.job(m.id), [self.id, started, m.task, m.queue, m.enqueued_ms, ttl_ms]
            )
            for _, m, _ in good
        ]
        try:
            replies = await self._streams.start(starts)
        except CONNECTION_ERRORS:
            # Nothing ran; the entries stay in our pending list and come back
            # through recovery once the lease lapses. Hand them back now instead.
            for entry, _, _ in good:
                executors.start_soon(self._give_back, entry)
            return
        for (entry, msg, task), reply in zip(good, replies, strict=True):
            if isinstance(reply, bytes):
                log.info("job %s already finished; acking its redelivered message", msg.id)
                executors.start_soon(self._ack_only, entry)
                continue
            attempt = reply if isinstance(reply, int) else 1
            if isinstance(reply, Exception):
                log.warning("could not mark job %s started (%s); running it anyway", msg.id, reply)
            executors.start_soon(self._execute, entry, msg, task, attempt)

    def _decode(self, entry: Entry) -> tuple[Message | None, TaskDef | None, str | None]:
        if entry.payload is None:
            return None, None, "undecodable message: the entry has no 'm' field"
        try:
            msg = decode_message(entry.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return None, None, f"undecodable message: {exc}"
        task = self.app.registry.get(msg.task)
        if task is None:
            return msg, None, f"unknown task {msg.task!r}: no task of that name is registered"
        return msg, task, None

    # -- executors -------------------------------------------------------------

    async def _execute(self, entry: Entry, msg: Message, task: TaskDef, attempt: int) -> None:
        key = (entry.queue, entry.id)
        settled = False  # completion written, or the message belongs to someone else now
        try:
            with anyio.CancelScope() as scope:
                self._inflight[key] = scope
                opts = resolve(self.app.defaults(), task.options, _call_options(msg))
                ctx = (
                    Context(
                        app=self.app,
                        job_id=msg.id,
                        task_name=msg.task,
                        queue=msg.queue,
                        attempt=attempt,
                        worker_id=self.id,
                    )
                    if task.wants_context
                    else None
                )
                try:
                    outcome = await run_attempt(task, msg, ctx, opts, self._threads)
                except ArgumentError as exc:
                    await self._dead_letter(entry, msg, f"invalid arguments: {exc}")
                    settled = True
                    return
                finish = self._finish(entry, msg.id, outcome, opts.result_ttl)
                await self._completer.submit(entry.queue, entry.id, finish)
                settled = True
            if scope.cancelled_caught:  # lost the lease: another worker runs it now
                settled = True
                log.warning("job %s was taken over by another worker; stopped it here", msg.id)
        finally:
            self._inflight.pop(key, None)
            if not settled:
                self._unfinished.append(key)
            self._release()

    def _finish(self, entry: Entry, job_id: str, outcome: Outcome, ttl: float) -> Finish:
        if outcome.state == JobState.FAILED.value and outcome.error is not None:
            log.warning("job %s failed: %s: %s", job_id, outcome.error.type, outcome.error.message)
        return Finish(
            entry.queue,
            entry.id,
            job_id,
            outcome.state,
            encode(outcome),
            outcome.finished_ms,
            int(ttl * 1000),
        )

    async def _reject(self, entry: Entry, msg: Message | None, reason: str) -> None:
        try:
            await self._dead_letter(entry, msg, reason)
        finally:
            self._release()

    async def _dead_letter(self, entry: Entry, msg: Message | None, reason: str) -> None:
        """Dead-letter a message that cannot run, failing its job so waiters learn why."""
        log.error(
            "dead-lettering message %s of queue %r: %s", entry.id.decode(), entry.queue, reason
        )
        try:
            # Dead letter first, then the job's record: a crash in between leaves
            # the message safe in the dead-letter stream (re-drivable); the other
            # order could leave a failed record that makes the redelivered
            # message look finished, and it would never reach the dead letters.
            await self._streams.dead_letter(entry, reason, self.app.dead_letter_maxlen, now_ms())
            if msg is not None:
                kind = "ArgumentError" if reason.startswith("invalid arguments") else "UnknownTask"
                outcome = error_outcome(kind, reason)
                await self._completer.write_now(
                    self._finish(entry, msg.id, outcome, self.app.result_ttl)
                )
        except CONNECTION_ERRORS as exc:
            log.warning("could not dead-letter %s (%s); it will be retried", entry.id, exc)

    async def _ack_only(self, entry: Entry) -> None:
        try:
            await self._completer.submit(entry.queue, entry.id, None)
        finally:
            self._release()

    async def _give_back(self, entry: Entry) -> None:
        try:
            await self._streams.release(entry.queue, self.id, [entry.id], self._vt_ms)
        except CONNECTION_ERRORS:
            pass
        finally:
            self._release()

    # -- lease -----------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew the lease of every in-flight entry well within the visibility timeout,
        so a long task on a live worker is never taken over by another."""
        interval = max(0.05, self.app.visibility_timeout / 4)
        while True:
            await anyio.sleep(interval)
            by_queue: dict[str, list[bytes]] = {}
            for queue, entry_id in list(self._inflight):
                by_queue.setdefault(queue, []).append(entry_id)
            for queue, ids in by_queue.items():
                try:
                    lost = await self._streams.renew(queue, self.id, ids)
                except CONNECTION_ERRORS as exc:
                    log.warning("could not renew leases (%s)", exc)
                    break
                for entry_id in lost:
                    scope = self._inflight.get((queue, entry_id))
                    if scope is not None:
                        log.warning(
                            "lost the lease on %s (another worker took it over); "
                            "cancelling it here",
                            entry_id.decode(),
                        )
                        scope.cancel()

    # -- shutdown --------------------------------------------------------------

    async def _release_unfinished(self) -> None:
        """Hand messages whose tasks were cancelled straight to other workers."""
        left: dict[str, list[bytes]] = {}
        for queue, entry_id in self._unfinished:
            left.setdefault(queue, []).append(entry_id)
        with anyio.move_on_after(5):
            for queue, ids in left.items():
                try:
                    await self._streams.release(queue, self.id, ids, self._vt_ms)
                except CONNECTION_ERRORS:
                    return

    async def _forget_self(self) -> None:
        """Remove this consumer from its groups when it holds nothing."""
        with anyio.move_on_after(5):
            for queue in self.queues:
                try:
                    await self._streams.remove_consumer_if_idle(queue, self.id)
                except (*CONNECTION_ERRORS, rex.ResponseError):  # type: ignore[misc]
                    return


def _call_options(msg: Message) -> TaskOptions:
    """The options the caller set on this message (``None`` fields were not set)."""
    return TaskOptions(
        queue=msg.queue,
        timeout=msgspec.UNSET if msg.timeout is None else msg.timeout,
        result_ttl=msgspec.UNSET if msg.result_ttl is None else msg.result_ttl,
        store_result=msgspec.UNSET if msg.store_result is None else msg.store_result,
    )
