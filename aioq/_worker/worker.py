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

import asyncio
import logging
import os
import random
import signal
import socket
import time
import uuid
from typing import TYPE_CHECKING

import anyio
from redis import exceptions as rex

from .._transport.connection import (
    CONNECTION_ERRORS,
    check_server_version,
    connect,
    wait_until_reachable,
)
from .._transport.keys import LEVELS
from .._transport.scripts import SCRIPTS
from .._transport.streams import Entry, Streams
from .completer import Completer
from .dispatch import Dispatcher
from .lease import Lease
from .scheduler import Scheduler

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anyio.abc import TaskStatus

    from ..app import App

log = logging.getLogger("aioq.worker")

PUMP_IDLE = 0.5
"""Longest sleep of the delayed-message pump, in seconds."""
PUMP_BATCH = 500
FAIRNESS = 10
"""One read in this many takes the least urgent priority levels first."""


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
        scheduler: also run the app's periodic schedules (``Scheduler``); any
            number of workers may, each tick is still sent once.
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
        scheduler: bool = False,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.app = app
        self.queues = list(dict.fromkeys(queues or app.queues()))
        self.concurrency = concurrency
        self.grace = grace
        self.connect_timeout = connect_timeout
        self.block_ms = max(1, int(block * 1000))
        self.scheduler = scheduler
        self.id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._free = concurrency
        self._reading = 0  # slots reserved by the read in progress
        self._slot_freed = asyncio.Event()
        self._pump_wake = asyncio.Event()
        self._stopping = False
        self.ready = anyio.Event()
        """Set once the worker has connected, created its groups and started reading."""
        self._rotate = 0
        self._claim_cursors = {q: [b"0-0"] * LEVELS for q in self.queues}
        self._levels = {
            app.keys.stream(q, level): (q, level) for q in self.queues for level in range(LEVELS)
        }
        """Every level stream this worker reads: key → (queue, level)."""
        self._reads = 0
        self._next_claim = 0.0
        self._threads = anyio.CapacityLimiter(concurrency)
        self._vt_ms = int(app.visibility_timeout * 1000)
        self._lease = Lease.for_timeout(app.visibility_timeout)
        self._streams: Streams
        self._completer: Completer
        self._dispatcher: Dispatcher | None = None

    # -- control ---------------------------------------------------------------

    def stop(self) -> None:
        """Stop reading; in-flight tasks get ``grace`` seconds to finish."""
        self._stopping = True
        self._release_slot_waiters()

    def kill(self) -> None:
        """Stop now: cancel in-flight tasks (their messages are left for other workers)."""
        self.stop()
        if self._dispatcher is not None:
            self._dispatcher.cancel_all()

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
            await check_server_version(redis, self.app.url)
            await SCRIPTS.load_all(redis)
            self._streams = Streams(redis, self.app.keys)
            self._completer = Completer(self._streams, self.id)
            self._dispatcher = Dispatcher(
                self.app,
                self.id,
                self._streams,
                self._completer,
                self._threads,
                self._release,
                self._poke_pump,
            )
            for queue in self.queues:
                await self._streams.ensure_group(queue)
            self._log_startup()
            async with anyio.create_task_group() as services:
                if handle_signals:
                    services.start_soon(self._handle_signals)
                services.start_soon(self._completer.run)
                services.start_soon(self._pump)
                services.start_soon(self._dispatcher.heartbeat)
                services.start_soon(self._dispatcher.abort_listener)
                if self.scheduler:
                    services.start_soon(Scheduler(self.app, redis).run)
                async with asyncio.TaskGroup() as executors:
                    self._dispatcher.bind(executors)
                    task_status.started()
                    self.ready.set()
                    await self._read_loop()
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
        if self._free < self.concurrency and self._dispatcher is not None:
            log.warning(
                "grace period over: cancelling %d task(s); their messages go to other workers",
                self.concurrency - self._free,
            )
            self._dispatcher.cancel_all()

    # -- slots -----------------------------------------------------------------

    def _release_slot_waiters(self) -> None:
        self._slot_freed.set()
        self._slot_freed = asyncio.Event()

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
                await dispatcher.dispatch(entries)

    async def _fetch(self, n: int) -> list[Entry]:
        """Up to ``n`` entries: a dead worker's, when a recovery pass is due, else new ones."""
        if time.monotonic() >= self._next_claim:
            # Frequent passes (one cheap XAUTOCLAIM per queue) keep recovery close
            # to the lease itself.
            every = self._lease.claim_every
            self._next_claim = time.monotonic() + every * random.uniform(0.75, 1.25)
            entries = await self._claim(n)
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
        start = self._rotate % len(self.queues)
        self._rotate += 1
        queues = self.queues[start:] + self.queues[:start]
        self._reads += 1
        ascending = self._reads % FAIRNESS == 0
        entries, after = await self._streams.fetch(self.id, queues, n, ascending)
        if entries or self._stopping:
            return entries
        existing = {key: self._levels[key] for key, entry_id in after.items() if entry_id}
        if existing and n >= len(existing):
            return await self._streams.read_blocking(
                self.id, existing, n // len(existing), self.block_ms
            )
        await self._streams.wait(after, self.block_ms)
        return []

    async def _claim(self, n: int) -> list[Entry]:
        """Take over entries idle longer than the visibility timeout (a dead worker's)."""
        claimed: list[Entry] = []
        for queue in self.queues:
            if len(claimed) >= n:
                break
            cursors, entries, deleted = await self._streams.claim(
                queue,
                self.id,
                self._lease.claim_idle_ms,
                self._claim_cursors[queue],
                n - len(claimed),
            )
            self._claim_cursors[queue] = cursors
            if deleted:
                log.warning(
                    "%d pending message(s) of queue %r were deleted before they were processed",
                    deleted,
                    queue,
                )
            if entries:
                # XAUTOCLAIM counted this delivery; a message that keeps coming
                # back is dead-lettered by max_deliveries instead of looping.
                log.warning(
                    "recovered %d message(s) of queue %r from a worker that stopped "
                    "renewing its lease",
                    len(entries),
                    queue,
                )
            claimed.extend(entries)
        return claimed

    # -- delayed messages ------------------------------------------------------

    async def _pump(self) -> None:
        """Move due delayed messages (``delay``/``eta``, retries) into their streams.

        Every worker pumps; ``pump.lua`` moves each message exactly once. What is
        due, and how long until the next one is, are judged by the Redis clock
        (this host's may be wrong). It sleeps until the next known due time, at
        most ``PUMP_IDLE`` seconds (a new delayed message may be due sooner than
        anything it has seen).
        """
        outage = False
        while True:
            wake = PUMP_IDLE
            try:
                for queue in self.queues:
                    moved, wait_ms = await self._streams.pump(queue, PUMP_BATCH)
                    if moved == PUMP_BATCH:
                        wake = 0.0
                    elif wait_ms >= 0:
                        wake = min(wake, wait_ms / 1000)
                outage = False
            except Exception as exc:
                if not outage:
                    log.warning("cannot move delayed messages (%s); retrying", exc)
                    outage = True
                wake = 0.5
            if wake > 0:
                with anyio.move_on_after(max(0.001, wake)):
                    await self._pump_wake.wait()
            self._pump_wake = asyncio.Event()
            await asyncio.sleep(0)

    def _poke_pump(self, delay_ms: int) -> None:
        """A message was put back, due ``delay_ms`` from now: pump again by then
        (at once: the pump learns the exact wait, by Redis time, from pump.lua)."""
        self._pump_wake.set()

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
                except CONNECTION_ERRORS:
                    return

    async def _forget_self(self) -> None:
        """Remove this consumer from its groups when it holds nothing."""
        with anyio.move_on_after(5):
            for queue in self.queues:
                for stream in self.app.keys.level_streams(queue):
                    try:
                        await self._streams.remove_consumer_if_idle(stream, self.id)
                    except rex.ResponseError:
                        continue  # no such stream or group: nothing to forget
                    except CONNECTION_ERRORS:
                        return
