"""The worker: reads messages through the consumer group and runs them.

Shape of one worker process (one event loop)::

    run()
    ├── reader      reserve free slots → XAUTOCLAIM (now and then) or XREADGROUP
    │               → decode → start.lua (skip finished jobs) → spawn executors
    ├── executors   one task per message, at most ``concurrency`` at once
    │               → run_attempt → completer.submit (slot held until written)
    ├── completer   outcome + ack + publish for a whole tick in one pipeline
    ├── heartbeat   a thread of its own, with its own connection: renews the
    │               lease on every held entry (renew.lua), whatever the tasks do
    ├── sweep       now and then: removes dead workers' consumers that hold nothing
    └── signals     first SIGTERM/SIGINT: drain; second: cancel at once

Sync tasks run in at most ``threads`` threads (default: 4 per CPU core), apart
from the ``concurrency`` slots: a hundred CPU-bound threads would starve the
event loop and every thread but theirs of the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from .._core.context import NO_STATE
from .._core.options import check_number
from .._transport.connection import (
    OUTAGE_ERRORS,
    REDIS_ERRORS,
    OutOfMemoryError,
    ResponseError,
    outage_text,
)
from .._transport.keys import LEVELS
from . import gcpolicy, preflight, presence, stopping
from .completer import Completer
from .dispatch import Dispatcher
from .health import endpoints
from .lease import Lease
from .lifespan import lifespan
from .pump import Pump
from .reader import SMALL, FewQueues, ManyQueues
from .recovery import Recovery
from .tally import Tally

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from anyio.abc import TaskStatus

    from .._transport.broker import WorkerBroker
    from .._transport.types import Entry
    from .host import WorkerHost

log = logging.getLogger("aioq.worker")

FAIRNESS = 10
"""One read in this many takes the least urgent priority levels first."""
RETRY_MAX = 2.0
"""Longest pause between two tries of a loop that meets an outage, in seconds."""


def default_threads(concurrency: int) -> int:
    """Threads for sync tasks: 4 per CPU core this process may use, at most ``concurrency``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(concurrency, 4 * cores))


class Worker:
    """Runs tasks of ``app`` from ``queues`` with at most ``concurrency`` at once.

    Args:
        app: the app whose registered tasks this worker runs.
        queues: queues to consume; default: the app's default queue and every
            queue a registered task names. A partitioned queue's name means every
            one of its partitions (``hot`` → ``hot#0`` … ``hot#7``).
        concurrency: most messages held (running or being completed) at once.
        grace: seconds in-flight tasks get to finish after a stop request.
        connect_timeout: seconds to keep retrying an unreachable Redis at start.
        block: seconds one XREADGROUP waits for new messages.
        scheduler: also run the app's periodic schedules (``Scheduler``); any
            number of workers may, each tick is still sent once.
        threads: most sync tasks running at once, each in a thread (default: 4
            per CPU core, at most ``concurrency``). The rest wait for a thread
            while holding their slot (their leases are kept).
        strict: refuse to start (``ConfigurationError``) on a Redis that may lose
            aioq's data silently: a ``maxmemory-policy`` other than ``noeviction``.
            Without it, a warning is logged.
        burst: stop once nothing runs here and its queues are empty (see
            ``stopping.idle``: delayed messages count, however far ahead).
        unknown_task_grace: seconds a message for a task this worker does not
            know is handed back (for a worker running newer code: a rolling
            deploy) before it is dead-lettered; 0: at once (docs/deploys.md).
        health_port: serve ``/livez`` + ``/readyz`` (``health.py``) on ``health_host``.
        metrics_port: serve Prometheus ``/metrics`` (``metrics.py``, needs
            ``aioq[metrics]``) on ``health_host``.
    """

    def __init__(
        self,
        app: WorkerHost,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 100,
        grace: float = 30.0,
        connect_timeout: float = 30.0,
        block: float = 1.0,
        name: str | None = None,
        scheduler: bool = False,
        threads: int | None = None,
        strict: bool = False,
        burst: bool = False,
        health_port: int | None = None,
        health_host: str = "127.0.0.1",
        metrics_port: int | None = None,
        unknown_task_grace: float = 60.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        preflight.check(app, strict, grace=grace, connect_timeout=connect_timeout)
        check_number("unknown_task_grace", unknown_task_grace, positive=False)
        self.unknown_task_grace = unknown_task_grace
        self.app = app
        # a partitioned queue (App.queue) stands for all its partitions
        self.queues = app.partitions.expand(queues or app.queues())
        self.concurrency = concurrency
        self.grace = grace
        self.connect_timeout = connect_timeout
        self.block_ms = max(1, int(block * 1000))
        self.scheduler = scheduler
        self.threads = threads if threads is not None else default_threads(concurrency)
        self.strict = strict
        self.burst = burst
        self.health_port = health_port
        self.health_host = health_host
        if metrics_port is not None:  # metrics.py loads only then (worker memory)
            from .metrics import require

            require(metrics_port)
        self.metrics_port = metrics_port
        self.tally = Tally()  # kept only with metrics_port
        self.read_failing = False  # the read loop meets an outage (/readyz: 503)
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._free = concurrency
        self._reading = 0  # slots reserved by the read in progress
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self.ready = anyio.Event()
        """Set once the worker has connected, created its groups and started reading."""
        self.tune_gc = False
        """Once ready, freeze what start-up made and collect young objects less often
        (``gcpolicy.py``: ~15 % of a no-op's CPU). ``aioq worker`` sets it (a process
        of its own); an embedded ``Worker`` leaves the program's collector alone."""
        self.state: Mapping[str, Any] = NO_STATE
        """What the app's ``on_worker_start`` hooks returned (``ctx.state``), once run."""
        self._few = FewQueues(self.queues, self.block_ms)
        self._levels: dict[str, tuple[str, int]] = {}
        """Every level stream this worker reads: key → (queue, level) (up to ``SMALL``
        queues: ``FewQueues`` reads with it)."""
        self._reads = 0
        self._pause = 0.1  # between reads while Redis fails
        self._threads = anyio.CapacityLimiter(self.threads)
        vt = app.settings.visibility_timeout
        self._vt_ms = int(vt * 1000)
        self._lease = Lease.for_timeout(vt)
        self._streams: WorkerBroker
        self._completer: Completer
        self._dispatcher: Dispatcher | None = None
        self._recovery: Recovery
        self._pump: Pump
        self._many: ManyQueues | None = None  # more than SMALL queues (reader.py)

    # -- control ---------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading; in-flight tasks get ``grace`` seconds to finish."""
        self._stopping = True
        self._release_slot_waiters()
        if self._many is not None:
            self._many.stop()

    def kill(self) -> None:
        """Stop now: cancel in-flight tasks (their messages are left for other workers)."""
        self.stop()
        if self._dispatcher is not None:
            self._dispatcher.cancel_all()

    @property
    def running(self) -> int:
        """Messages held right now (running or waiting for their completion write)."""
        return self.concurrency - self._free - self._reading

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called."""
        return self._stopping

    @property
    def streams(self) -> WorkerBroker:
        """This worker's Redis operations (set once ``run()`` has connected)."""
        return self._streams

    async def idle(self) -> bool:
        """No message held here and none left in its queues (``stopping.idle``)."""
        return await stopping.idle(self)

    @property
    def worst_renewal_gap(self) -> float:
        """The longest time, in seconds, this worker's held leases went without a
        renewal (it must stay well below the visibility timeout)."""
        return self._dispatcher.worst_gap if self._dispatcher is not None else 0.0

    # -- main ------------------------------------------------------------------

    async def run(
        self,
        *,
        handle_signals: bool = False,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until stopped. With ``handle_signals``, SIGTERM/SIGINT stop it."""
        async with endpoints(self), lifespan(self.app.hooks) as self.state:
            await self._run(handle_signals, task_status)

    async def _run(self, handle_signals: bool, task_status: TaskStatus[None]) -> None:
        settings = self.app.settings
        session = self._streams = self.app.broker.session(events_maxlen=settings.events_maxlen)
        if len(self.queues) <= SMALL:  # many queues: ManyQueues.order instead
            self._levels = {
                session.level_stream(q, level): (q, level)
                for q in self.queues
                for level in range(LEVELS)
            }
        try:
            await session.wait_until_reachable(self.connect_timeout)
            existing = await preflight.prepare(session, self.queues, self.strict)
            self._pump = Pump(session, self.queues)
            if len(self.queues) > SMALL:
                self._many = ManyQueues(session, self.queues, self.block_ms, existing)
            self._completer = Completer(self._streams, self.id)
            dispatcher = self._dispatcher = Dispatcher(
                self.app,
                self.id,
                self._streams,
                self._completer,
                self._threads,
                self._release,
                self._poke_pump,
            )
            dispatcher.tally = self.tally if self.metrics_port is not None else None
            dispatcher.middleware, dispatcher.state = self.app.hooks.middleware, self.state
            dispatcher.unknown_task_grace_ms = int(self.unknown_task_grace * 1000)
            levels = self._many.order if self._many is not None else self._levels
            self._recovery = Recovery(
                self._streams, self.queues, self.id, self._lease, dispatcher, levels
            )
            if self._many is not None:
                self._recovery.many = self._many
            self._log_startup()
            await presence.arrive(session)
            dispatcher.status = presence.entry(self, dispatcher)
            renewer = session.lease_renewer(
                self.id, max(1.0, self._lease.stale_after), presence.every(self._lease)
            )
            with dispatcher.keeping_leases(renewer):
                async with anyio.create_task_group() as services:
                    if handle_signals:
                        await services.start(stopping.handle_signals, self)
                    services.start_soon(self._completer.run)
                    services.start_soon(self._pump.run)
                    services.start_soon(dispatcher.heartbeat)
                    services.start_soon(dispatcher.abort_listener)
                    services.start_soon(self._recovery.sweep_forever)
                    if self.scheduler:
                        from .scheduler import Scheduler  # only then (worker memory)

                        services.start_soon(Scheduler(self.app, session).run)
                    if self.burst:
                        services.start_soon(stopping.stop_when_idle, self)
                    async with asyncio.TaskGroup() as executors:
                        dispatcher.bind(executors)
                        task_status.started()
                        self.ready.set()
                        if self.tune_gc:
                            gcpolicy.tune()
                        try:
                            await self._read_loop()
                        finally:
                            if self._many is not None:
                                self._many.stop()  # its armed watches end
                        await self._drain()
                    await self._release_unfinished()
                    services.cancel_scope.cancel()
            await self._forget_self()
        finally:
            await session.aclose()
        log.info("worker %s stopped", self.id)

    def _log_startup(self) -> None:
        for queue in self.queues:
            log.info(
                "worker %s consuming queue %r (%s)",
                self.id,
                queue,
                self._streams.level_stream(queue, 0),
            )
        names = self.app.registry.names()
        log.info(
            "%d task(s) registered: %s; concurrency %d",
            len(names),
            ", ".join(names) or "-",
            self.concurrency,
        )

    async def _drain(self) -> None:
        """Wait for in-flight work to complete, at most ``grace`` seconds."""
        with anyio.move_on_after(self.grace):
            while self._free < self.concurrency:
                self._slot_freed.clear()
                await self._slot_freed.wait()
        if self._free < self.concurrency and self._dispatcher is not None:
            log.warning(
                "grace period over: cancelling %d task(s); their messages go to other workers",
                self.concurrency - self._free,
            )
            self._dispatcher.cancel_all()

    # -- slots -----------------------------------------------------------------

    def _release_slot_waiters(self) -> None:
        # One event for the worker's life: whoever waits clears it first (with no
        # await in between), so a release while nobody waits costs a flag check,
        # not a new Event per message (profiled: issue 14).
        self._slot_freed.set()

    def _release(self, n: int = 1) -> None:
        self._free += n
        self._release_slot_waiters()

    async def _reserve(self) -> int:
        """Take every free slot (waiting for one if none is free); 0 when stopping."""
        while self._free == 0 and not self._stopping:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        if self._stopping:
            return 0
        n, self._free = self._free, 0
        return n

    # -- reading ---------------------------------------------------------------

    async def _read_loop(self) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        outage = False
        while True:
            n = await self._reserve()
            if n == 0:
                return
            self._reading = n
            try:
                entries = await self._fetch(n)
            except ResponseError as exc:
                self._release(n)
                # UNBLOCKED: a read blocked on a stream that was deleted meanwhile
                # (FLUSHDB, a DEL by hand); its group went with it, as for NOGROUP.
                if "NOGROUP" in str(exc) or str(exc).startswith("UNBLOCKED"):
                    log.warning("consumer group missing (Redis lost its data?); recreating it")
                    await self._recreate_groups()
                    continue
                if not isinstance(exc, (*OUTAGE_ERRORS, OutOfMemoryError)):
                    raise  # a configuration error, e.g. a key of the wrong type
                self.read_failing = True
                outage = await self._outage(exc, outage)
                continue
            except OUTAGE_ERRORS as exc:
                self._release(n)
                self.read_failing = True
                outage = await self._outage(exc, outage)
                continue
            finally:
                self._reading = 0
            # What was read is held from now on: renewed until its task runs.
            dispatcher.reading = tuple(e.key for e in entries)
            self.read_failing = False
            if outage:
                log.info("Redis answers again; reading resumed")
                outage = False
                self._pause = 0.1
            if len(entries) < n:
                self._release(n - len(entries))
            if entries:
                await dispatcher.dispatch(entries)
                # Two turns of the loop: the tasks just started run to their first
                # await, and a quick one's completion write goes out, before the
                # next read is built and sent (-15 % round trip when nearly idle).
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    async def _outage(self, exc: BaseException, known: bool) -> bool:
        """Redis cannot serve reads now: log once, back off; returns True."""
        assert self._dispatcher is not None
        self._dispatcher.note_outage()
        if not known:
            log.warning("cannot read from Redis (%s); retrying", outage_text(exc))
        await anyio.sleep(self._pause)
        self._pause = min(self._pause * 2, RETRY_MAX)
        return True

    async def _recreate_groups(self) -> None:
        try:
            await self._streams.ensure_groups(self.queues)
        except OUTAGE_ERRORS as exc:
            log.warning("could not recreate the consumer groups yet (%s)", outage_text(exc))
            await anyio.sleep(0.5)

    async def _fetch(self, n: int) -> list[Entry]:
        """Up to ``n`` entries: a dead worker's, when a recovery pass is due, else new ones."""
        if self._recovery.due():
            # Frequent passes (one cheap claim.lua per queue) keep recovery close
            # to the lease itself.
            entries = await self._recovery.claim(n)
            if entries:
                return entries
        return await self._read(n)

    async def _read(self, n: int) -> list[Entry]:
        """Up to ``n`` new entries, most urgent priority level first (every
        ``FAIRNESS``-th read least urgent first, so low levels still move).

        The queues' order rotates on every read, so equally urgent messages of
        several queues are taken in turn. When nothing is ready the worker
        blocks until a message arrives, without ever holding more messages
        than free slots:

        - with at least as many free slots as existing level streams (the usual
          case), one XREADGROUP BLOCK on them, ``n // streams`` per stream: the
          arriving message is taken in the same round trip. A level's *first*
          message ever (its stream does not exist yet) is seen by the next
          fetch, within ``block``;
        - otherwise one XREAD BLOCK on every level stream, which takes nothing;
          ``fetch.lua`` then takes the most urgent message.
        """
        self._reads += 1
        ascending = self._reads % FAIRNESS == 0
        if self._many is not None:
            entries, watch = await self._many.fetch(self.id, n, ascending, self._stopping)
            if watch is not None and not self._stopping:
                await self._many.watch(watch, self._recovery.wake_at())
            return entries
        return await self._few.read(
            self._streams, self._levels, self.id, n, ascending, self._stopping
        )

    # -- delayed messages ------------------------------------------------------

    def _poke_pump(self, delay_ms: int) -> None:
        """A message was put back, due ``delay_ms`` from now: pump again by then
        (at once: the pump learns the exact wait, by Redis time, from pump.lua)."""
        self._pump.poke()

    # -- shutdown --------------------------------------------------------------

    async def _release_unfinished(self) -> None:
        """Hand messages whose tasks were cancelled straight to other workers."""
        left: dict[str, list[bytes]] = {}
        for stream, entry_id in self._dispatcher.unfinished if self._dispatcher else ():
            left.setdefault(stream, []).append(entry_id)
        with anyio.move_on_after(5):
            for stream, ids in left.items():
                try:
                    await self._streams.release(stream, self.id, ids, self._vt_ms)
                except REDIS_ERRORS as exc:
                    # Their leases lapse instead: recovered within the visibility timeout.
                    log.warning("could not hand back unfinished messages (%s)", outage_text(exc))
                    return

    async def _forget_self(self) -> None:
        """Remove this consumer from its groups when it holds nothing, and this
        worker's registry entry (else it expires a few heartbeats later)."""
        with anyio.move_on_after(5):
            await presence.leave(self._streams, self.id)
            try:
                await self._recovery.forget(self.id)
            except REDIS_ERRORS as exc:
                # A consumer left behind is removed by other workers' sweeps.
                log.info("could not remove this worker's consumer (%s)", outage_text(exc))
