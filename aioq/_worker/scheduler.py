"""The scheduler: sends the jobs of an app's periodic schedules, each tick once.

Any number of schedulers may run (``aioq scheduler``, ``aioq worker --scheduler``):
every one computes the same ticks from the same schedules and tries to fire
each through ``tick.lua``, which sends the job only if the schedule's last fired
tick in Redis is older (a compare-and-set on a time that only moves forward).
So a tick is sent exactly once however many schedulers run, and a restarted
scheduler, or one whose clock lags, never sends an old tick again.

Time is the Redis server's, never this host's wall clock: the scheduler keeps
the offset of Redis ``TIME`` from its monotonic clock (``RedisClock``), so a
wrong or jumping wall clock fires nothing early or late; ``tick.lua`` refuses a
tick more than the grace ahead of Redis time and ignores a remembered last tick
in the future of Redis time (left by a clock that ran ahead), so neither can
silence a schedule.

Schedules come from the app's code and from Redis (added at run time with
``app.schedules.add``; read again every ``RELOAD`` seconds). A paused schedule's
ticks are refused by ``tick.lua`` itself, so pausing needs no scheduler to
notice; resuming does not back-fill the paused window.

A tick is fired when it is due, or up to ``MISFIRE_GRACE`` later (a busy event
loop, a short Redis blip). A tick no scheduler fired within that is *missed*
(no scheduler ran, Redis was down, the clock jumped): with ``catch_up=False``
the schedule skips to its next tick; with ``catch_up=True`` one job is sent at
once for the latest missed tick, standing for the whole missed window.
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from .._core.message import new_message, now_ms
from .._core.options import unwire, wire
from .._core.schedule import decode_schedule, latest_fire, next_fire, zone
from .._transport.connection import REDIS_ERRORS

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from .._core.schedule import Schedule
    from .._transport.broker import WorkerBroker
    from .host import WorkerHost

__all__ = ["MISFIRE_GRACE", "RedisClock", "Scheduler", "resume_from", "upcoming"]

log = logging.getLogger("aioq.scheduler")

MISFIRE_GRACE = 1.0
"""Seconds a tick may be late and still fire; older unfired ticks are missed."""
MAX_SLEEP = 1.0
"""Longest sleep between two looks at the clock (clock jumps, Redis coming back)."""
RETRY_DELAY = 0.5
"""Seconds between tries while Redis fails."""
RESYNC = 10.0
"""Seconds between two readings of the Redis clock."""
RELOAD = 2.0
"""Seconds between two readings of the schedules added at run time."""
NOISY_READING = 0.2
"""A Redis clock reading whose round trip took longer (seconds) is too vague to
replace a good one."""

GRACE_MS = round(MISFIRE_GRACE * 1000)


def upcoming(s: Schedule, planned_ms: int, now_ms: int) -> tuple[int, bool]:
    """The tick to fire next, given the next tick not yet fired and the time;
    and whether ticks were missed (``planned_ms`` is older than the grace).

    The tick returned may be due already (fire it now) or in the future (a
    skip, with ``catch_up=False``).
    """
    oldest = now_ms - round(MISFIRE_GRACE * 1000)
    if planned_ms > oldest:
        return planned_ms, False
    if s.catch_up:
        return latest_fire(s, now_ms), True  # one run for the whole missed window
    return next_fire(s, oldest), True


def resume_from(s: Schedule, last_ms: int | None, now_ms: int) -> int:
    """The next tick of ``s`` to fire, from the last tick Redis remembers as fired
    and Redis time. A schedule that never fired starts with its first tick after
    now (the past is not fired); so does one whose last tick lies further in the
    future of Redis time than the grace (a scheduler's clock ran ahead): that is
    healed, not obeyed."""
    if last_ms is None or last_ms > now_ms + GRACE_MS:
        return next_fire(s, now_ms)
    return next_fire(s, last_ms)


class RedisClock:
    """Redis time, read locally: the offset of the Redis server's ``TIME`` from
    this process's monotonic clock, measured now and then (``RESYNC``).

    This host's wall clock is never read, so a wrong one, or one that jumps,
    changes nothing; the error is at most half a round trip of the reading.
    """

    def __init__(self) -> None:
        self._offset: float | None = None
        """Redis ms minus monotonic ms."""
        self._read_at = 0.0

    @property
    def synced(self) -> bool:
        return self._offset is not None

    def stale(self) -> bool:
        return self._offset is None or time.monotonic() - self._read_at >= RESYNC

    async def sync(self, session: WorkerBroker) -> None:
        """Read the Redis clock (raises connection errors)."""
        before = time.monotonic()
        redis_ms = await session.redis_time()
        after = time.monotonic()
        self._read_at = after
        if self._offset is None or after - before <= NOISY_READING:
            self._offset = redis_ms - (before + after) * 500

    def now(self) -> int:
        """Redis time now, in ms since the epoch."""
        assert self._offset is not None, "sync() first"
        return round(time.monotonic() * 1000 + self._offset)


def stamp(ms: int, tz: str) -> str:
    """A tick as ISO 8601 in the schedule's time zone."""
    at = datetime.fromtimestamp(ms / 1000, zone(tz))
    return at.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")


def placement(app: WorkerHost, s: Schedule) -> tuple[str, int]:
    """(queue, priority level) of a schedule's jobs, resolved like a ``kiq()``. On a
    partitioned queue, always the partition of the schedule's name: its state hash
    (the compare-and-set of ``tick.lua``) lives in that partition's slot."""
    queue, level = app.placement(s.task, unwire(s.options, s.queue))
    return app.partitions.pick(queue, f"schedule:{s.name}"), level


class Scheduler:
    """Sends the jobs of ``app.schedules`` on time, each tick once across every
    scheduler of the app.

    Args:
        app: the app whose schedules to run.
        session: a connection to share (a worker's); default: its own.
        connect_timeout: seconds to keep retrying an unreachable Redis at start
            (own connection only).

    Raises:
        ConfigurationError, MessageTooLarge, TypeError: a schedule's call
            cannot be sent (checked here, before anything runs).
    """

    def __init__(
        self,
        app: WorkerHost,
        session: WorkerBroker | None = None,
        *,
        connect_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.schedules: list[Schedule] = []
        self.connect_timeout = connect_timeout
        self._session = session
        self._where: dict[str, tuple[str, int]] = {}
        self._wire: dict[str, dict[str, Any]] = {}
        self._code = list(app.schedules.values())
        for s in self._code:
            self._adopt(s)  # fail now, not at the first tick
        self._added: dict[str, bytes] = {}
        """Run-time schedules as last read from Redis (name → definition)."""
        self._loaded = 0.0
        self._next: dict[str, int] = {}
        """Per schedule, the next tick this scheduler has not seen fired."""
        self._missed: dict[str, int] = {}
        """Per schedule, the first tick of a missed run not yet reported."""
        self._down = False
        self._clock = RedisClock()
        self._early = False
        self._stopping = anyio.Event()
        self.ready = anyio.Event()
        """Set once the scheduler has read the schedules' state and planned."""

    def stop(self) -> None:
        """Stop after the tick being fired, if any."""
        self._stopping.set()

    def _adopt(self, s: Schedule) -> None:
        """Take ``s`` on: where its jobs go, its call's options; raises when its
        call cannot be sent."""
        self._where[s.name] = placement(self.app, s)
        self._wire[s.name] = wire(unwire(s.options)) | {"priority": self._where[s.name][1]}
        self._payload(s, f"{s.name}@{now_ms()}")
        self.schedules.append(s)

    async def _reload(self, session: WorkerBroker) -> list[Schedule]:
        """Read the run-time schedules again; take on the new and changed ones (they
        are returned, to be planned) and drop the removed ones."""
        self._loaded = time.monotonic()
        found = await session.schedule_definitions()
        code = {s.name for s in self._code}
        if found == self._added:
            return []
        fresh = []
        for name in set(self._added) | set(found):
            if name in code or self._added.get(name) == found.get(name):
                continue
            self.schedules = [s for s in self.schedules if s.name != name]
            self._next.pop(name, None)
            if name not in found:
                log.info("schedule %r was removed", name)
                continue
            try:
                s = decode_schedule(found[name])
                self._adopt(s)
            except Exception as exc:  # a definition this process cannot send
                log.warning("schedule %r added at run time cannot be sent here: %s", name, exc)
                continue
            log.info("schedule %r added at run time: %s, task %s", name, s.spec, s.task)
            fresh.append(s)
        self._added = found
        return fresh

    # -- main ------------------------------------------------------------------

    async def run(
        self,
        *,
        handle_signals: bool = False,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until stopped. With ``handle_signals``, SIGTERM/SIGINT stop it."""
        own = self._session is None
        session = self._session or self.app.broker.session()
        try:
            if own:
                await session.wait_until_reachable(self.connect_timeout)
                await session.check_server()
            async with anyio.create_task_group() as tg:
                if handle_signals:
                    tg.start_soon(self._handle_signals)
                await self._plan(session)
                self._log_startup()
                task_status.started()
                self.ready.set()
                await self._loop(session)
                tg.cancel_scope.cancel()
        finally:
            if own:
                await session.aclose()

    async def _handle_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s: scheduler stopped", signal.Signals(signum).name)
                self.stop()
                return

    async def _plan(self, session: WorkerBroker) -> None:
        """Start each schedule after the last tick Redis says was fired; a schedule
        that never fired starts with its first tick after now (the past is not
        fired)."""
        while not self._stopping.is_set():
            try:
                await self._clock.sync(session)
                await self._reload(session)
                await self._plan_some(session, self.schedules)
            except REDIS_ERRORS as exc:
                self._lost(exc)
                await self._sleep(RETRY_DELAY)
                continue
            self._back()
            return

    async def _plan_some(self, session: WorkerBroker, todo: list[Schedule]) -> None:
        """Plan each of ``todo`` from its state in Redis (the last tick fired, or its
        last resume when later: a paused window is not back-filled)."""
        if not todo:
            return
        where = [(self._where[s.name][0], s.name) for s in todo]
        found = await session.schedule_states(where)
        now = self._clock.now()
        for s, state in zip(todo, found, strict=True):
            last = state.planned_from if state else None
            if last is not None and last > now + GRACE_MS:
                log.warning(
                    "schedule %r: its last run (%s) lies in the future of Redis time "
                    "(a scheduler's clock ran ahead); ignored",
                    s.name,
                    stamp(last, s.tz),
                )
            self._next[s.name] = resume_from(s, last, now)

    def _log_startup(self) -> None:
        if not self.schedules:
            log.warning("scheduler started, but the app has no schedules")
            return
        log.info("scheduler started: %d schedule(s)", len(self.schedules))
        if not self._clock.synced:  # stopped before Redis answered
            return
        now = self._clock.now()
        for s in self.schedules:
            queue, level = self._where[s.name]
            at = upcoming(s, self._next.get(s.name, now), now)[0]
            log.info(
                "schedule %r: %s, task %s on queue %r (priority %d), next run %s",
                s.name,
                s.spec,
                s.task,
                queue,
                level,
                stamp(at, s.tz),
            )

    async def _loop(self, session: WorkerBroker) -> None:
        while not self._stopping.is_set():
            try:
                if self._clock.stale():
                    await self._clock.sync(session)
                if time.monotonic() - self._loaded >= RELOAD:
                    await self._plan_some(session, await self._reload(session))
                if await self._fire_due(session):
                    self._back()
                delay = MAX_SLEEP
                if self._next:
                    wait_ms = min(self._next.values()) - self._clock.now()
                    delay = min(delay, max(0.0, wait_ms / 1000))
                if self._early:  # refused as ahead even after a fresh reading
                    delay = max(delay, RETRY_DELAY)
            except REDIS_ERRORS as exc:
                # Ticks wait; those that stay unfired past the grace follow catch_up.
                self._lost(exc)
                delay = RETRY_DELAY
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with anyio.move_on_after(seconds):
            await self._stopping.wait()

    # -- firing ----------------------------------------------------------------

    async def _fire_due(self, session: WorkerBroker) -> int:
        """Fire every due tick, oldest first; returns how many Redis was asked about."""
        now = self._clock.now()
        tries = 0
        for s in self.schedules:
            while self._next[s.name] <= now:
                tick, missed = upcoming(s, self._next[s.name], now)
                if missed:
                    self._missed.setdefault(s.name, self._next[s.name])
                if tick > now:  # skipped ahead (catch_up=False)
                    self._next[s.name] = tick
                    break
                tries += 1
                if not await self._fire(session, s, tick):
                    await self._clock.sync(session)  # our idea of Redis time was off
                    break
        return tries

    async def _fire(self, session: WorkerBroker, s: Schedule, tick: int) -> bool:
        """Try to fire ``tick``; False when Redis refused it as too far ahead."""
        queue, level = self._where[s.name]
        job_id = f"{s.name}@{tick}"
        fired = await session.fire(
            queue,
            level,
            s.name,
            tick,
            job_id,
            self._payload(s, job_id),
            GRACE_MS,
        )
        if fired.paused:  # refused by tick.lua: nothing sent; the next tick may be
            log.debug("schedule %r is paused: %s not sent", s.name, stamp(tick, s.tz))
            self._missed.pop(s.name, None)
            self._next[s.name] = next_fire(s, tick)
            return True
        if fired.early:
            if not self._early:
                log.warning(
                    "schedule %r: Redis refused tick %s as %d ms ahead of its clock; "
                    "reading the Redis clock again",
                    s.name,
                    stamp(tick, s.tz),
                    tick - fired.last_ms,
                )
                self._early = True
            return False
        self._early = False
        missed = self._missed.pop(s.name, None)
        if missed is not None:
            self._report_missed(s, missed, tick)
        if fired.sent:
            log.info("schedule %r fired job %s for %s", s.name, job_id, stamp(tick, s.tz))
            ttl_ms = int(self.app.options_for(s.task, unwire(s.options)).result_ttl * 1000)
            try:
                await session.record_tick(job_id, s.task, queue, ttl_ms)
            except Exception as exc:  # the job runs all the same; only abort() needs it
                log.warning("schedule %r: no record for job %s (%s)", s.name, job_id, exc)
        else:
            log.debug("schedule %r: %s was fired already", s.name, stamp(tick, s.tz))
        # Another scheduler may be ahead: follow the last tick fired anywhere.
        self._next[s.name] = next_fire(s, max(tick, fired.last_ms))
        return True

    def _payload(self, s: Schedule, job_id: str) -> bytes:
        queue = self._where[s.name][0]
        _, payload = new_message(
            s.task,
            queue,
            s.args,
            s.kwargs,
            **self._wire[s.name],
            max_bytes=self.app.max_message_bytes,
            signer=self.app.signer,
            job_id=job_id,
        )
        return payload

    def _report_missed(self, s: Schedule, first: int, tick: int) -> None:
        if s.catch_up:
            log.warning(
                "schedule %r missed its runs since %s (no scheduler fired them within %gs); "
                "catch_up: one run now, for %s",
                s.name,
                stamp(first, s.tz),
                MISFIRE_GRACE,
                stamp(tick, s.tz),
            )
        else:
            log.warning(
                "schedule %r missed its runs from %s to %s (no scheduler fired them "
                "within %gs); skipped (catch_up=False)",
                s.name,
                stamp(first, s.tz),
                stamp(latest_fire(s, tick - 1), s.tz),
                MISFIRE_GRACE,
            )

    # -- outages ---------------------------------------------------------------

    def _lost(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("scheduler: Redis failed (%s); retrying", exc)
            self._down = True

    def _back(self) -> None:
        if self._down:
            log.info("scheduler: Redis answers again; schedules resumed")
            self._down = False
