"""Leases: the timing derived from the app's ``visibility_timeout`` (VT), and the
heartbeat that keeps a live worker's leases whatever its tasks do.

A live worker renews the lease of each message it holds every VT/10, so a
held message is never idle much longer than that. Any message idle longer
than 0.8 VT therefore belongs to a worker that stopped renewing — dead or
stalled — and recovery passes (about four a second) take it over: a dead
worker's messages restart between 0.7 VT and about 0.8 VT + 0.25 s after it
died.

The renewals run on a thread of their own with a connection of their own
(``_transport.leases``): a task that blocks the event loop, or CPU-bound sync
tasks competing for the GIL, cannot starve them. The thread only talks to
Redis; what it finds (a takeover) is handed to the event loop.

A worker never recovers entries it owns itself (after a stall it would run
them twice); it takes back only its own idle entries it no longer holds. After
an outage (BUSY, LOADING, a lost connection: nobody could renew) it waits half
a VT before recovering anything, so the other live workers renew first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from .._transport.connection import OUTAGE_ERRORS, outage_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from .._transport.broker import WorkerBroker
    from .._transport.leases import LeaseRenewer
    from .._transport.types import Renewed
    from .limits import Limits

log = logging.getLogger("aioq.worker")

Key = tuple[str, bytes]
"""An entry among all of a worker's streams: (level stream, entry id)."""

CONSUMER_IDLE_MIN = 600.0
"""Seconds a consumer must be idle, at least, before the sweep may remove it."""
CONSUMER_IDLE_LEASES = 10
"""…and at least this many visibility timeouts."""
SWEEP_EVERY = 60.0
"""Seconds between two sweeps for dead consumers (± 50 %) by each worker."""


@dataclass(frozen=True, slots=True)
class Lease:
    renew_every: float
    claim_idle_ms: int
    claim_every: float
    stale_after: float
    forget_idle_ms: int
    """A consumer idle this long that holds nothing is a dead worker's: removed."""
    sweep_every: float

    @classmethod
    def for_timeout(cls, visibility_timeout: float) -> Lease:
        vt = visibility_timeout
        return cls(
            renew_every=max(0.05, vt / 10),
            claim_idle_ms=max(1, int(vt * 800)),
            claim_every=max(0.05, min(0.25, vt / 10)),
            stale_after=vt / 2,
            forget_idle_ms=int(max(CONSUMER_IDLE_MIN, CONSUMER_IDLE_LEASES * vt) * 1000),
            sweep_every=SWEEP_EVERY,
        )


class LeaseKeeper:
    """The dispatcher's side of leases: renewing them while tasks run, telling
    whether they may have lapsed, and whether recovering others' is safe now."""

    streams: WorkerBroker
    worker_id: str
    lease: Lease
    limits: Limits
    inflight: dict[Key, asyncio.Task[Any]]
    _taken_over: set[Key]
    renewed_at: float
    """When every held lease was last renewed (monotonic; written by the heartbeat thread)."""

    status: Callable[[], Mapping[str, str | int]] | None = None
    """The worker's registry entry, written by the heartbeat thread (at most once
    a second, in the renewal's own pipeline)."""
    reading: tuple[Key, ...] = ()
    """Entries of the batch being dispatched: held (and renewed) before their tasks start."""
    recover_after: float = 0.0
    """No recovery pass before this (monotonic): set after each outage."""
    worst_gap: float = 0.0
    """Longest time, in seconds, held leases went without a renewal."""
    _gone_since: dict[Key, float] | None = None

    async def check_aborted(self) -> None:
        raise NotImplementedError

    # -- what is held ------------------------------------------------------------

    def held(self) -> list[Key]:
        """Every entry this worker holds right now. Called from the heartbeat thread:
        ``dict.copy`` and attribute reads are atomic under the GIL."""
        keys = list(self.inflight.copy())
        keys.extend(self.reading)
        return keys

    def holds(self, key: Key) -> bool:
        return key in self.inflight or key in self.reading

    def lease_stale(self) -> bool:
        """True when leases may have lapsed: no renewal for most of the timeout."""
        return time.monotonic() - self.renewed_at > self.lease.stale_after

    def note_outage(self) -> None:
        """Redis could not be used just now: nobody could renew. Give live workers
        time to renew before recovering their entries."""
        self.recover_after = max(self.recover_after, time.monotonic() + self.lease.stale_after)

    def may_recover(self) -> bool:
        return time.monotonic() >= self.recover_after

    # -- checks from the event loop ---------------------------------------------

    async def renew_held(self) -> None:
        """Renew every held lease from the event loop (before a recovery pass
        that follows a stall of the heartbeat thread)."""
        began = time.monotonic()
        found = {
            stream: await self.streams.renew(stream, self.worker_id, ids)
            for stream, ids in _by_stream(self.held()).items()
        }
        self._renewed(found)
        self.renewed_at = max(self.renewed_at, began)

    # -- the heartbeat -------------------------------------------------------------

    @contextlib.contextmanager
    def keeping_leases(self, renewer: LeaseRenewer) -> Iterator[None]:
        """Run the heartbeat thread for the duration of the block."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        thread = threading.Thread(
            target=self._beat_forever,
            args=(renewer, loop, stop),
            name=f"aioq-heartbeat-{self.worker_id}",
            daemon=True,
        )
        self.renewed_at = time.monotonic()
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=max(1.0, self.lease.renew_every * 2))
            renewer.close()
            log.info(
                "worst lease renewal gap %.2fs (visibility timeout %gs)",
                self.worst_gap,
                self.lease.stale_after * 2,
            )

    def _beat_forever(
        self, renewer: LeaseRenewer, loop: asyncio.AbstractEventLoop, stop: threading.Event
    ) -> None:
        """The heartbeat thread: renew every held lease every ``renew_every``."""
        last_ok = time.monotonic()
        failing = False
        while not stop.wait(self.lease.renew_every):
            began = time.monotonic()
            held = self.held()
            try:
                found = renewer.renew(_by_stream(held), self.status)
            except Exception as exc:
                if stop.is_set():
                    return  # the worker is closing the connection
                self.note_outage()
                if not failing:
                    _log_renew_failure(exc)
                    failing = True
                continue
            if failing:
                log.info("renewing leases again")
                failing = False
            self.renewed_at = began
            last_ok = self._measure(last_ok, bool(held))
            if any(r.taken or r.gone for r in found.values()):
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    loop.call_soon_threadsafe(self._renewed, found)

    def _measure(self, last_ok: float, held: bool) -> float:
        """Record the gap since the last successful renewal; returns now."""
        done = time.monotonic()
        gap = done - last_ok
        if held:
            self.worst_gap = max(self.worst_gap, gap)
            if gap > self.lease.stale_after:
                log.warning("leases went %.2fs without renewal", gap)
        return done

    def _renewed(self, found: dict[str, Renewed]) -> None:
        """On the event loop: act on what a renewal found.

        An entry another consumer owns now was taken over (this worker stalled
        past the lease): its task here is cancelled. An entry no longer pending
        was usually acked by this worker's own completer a moment ago — not a
        takeover, nothing to say. Only when a task still runs here for an entry
        that stays gone for a whole renewal period (another worker took it over
        and finished it) is that task cancelled too.
        """
        now = time.monotonic()
        before = self._gone_since or {}
        gone: dict[Key, float] = {}
        for stream, result in found.items():
            for entry_id in result.taken:
                self._cancel_taken((stream, entry_id), "another worker took it over")
            for entry_id in result.gone:
                key = (stream, entry_id)
                if key not in self.inflight:
                    continue
                since = gone[key] = before.get(key, now)
                # Seen gone a whole renewal apart *on the loop* (two reports queued
                # behind a blocked loop arrive together and prove nothing).
                if now - since >= self.lease.renew_every:
                    self._cancel_taken(
                        key,
                        "its entry is no longer pending: another worker took it over and "
                        "finished it, or the stream was deleted (FLUSHDB, DEL)",
                    )
        self._gone_since = gone

    def _cancel_taken(self, key: Key, why: str) -> None:
        task = self.inflight.get(key)
        if task is None or key in self._taken_over:
            return
        log.warning("lost the lease on %s (%s); cancelling it here", key[1].decode(), why)
        self._taken_over.add(key)
        task.cancel()

    async def heartbeat(self) -> None:
        """The event loop's part of the heartbeat: aborts announced while the abort
        listener was away, and ``max_running`` slots of the jobs running here."""
        interval = self.lease.renew_every
        failing = False
        while True:
            await anyio.sleep(interval)
            try:
                await self.check_aborted()
                await self.limits.renew()
            except Exception as exc:
                if not failing:
                    log.warning(
                        "could not check aborts or renew max_running slots (%s); retrying",
                        outage_text(exc),
                    )
                    failing = True
            else:
                failing = False


def _log_renew_failure(exc: Exception) -> None:
    if isinstance(exc, OUTAGE_ERRORS):
        log.warning("cannot renew leases (%s); retrying", outage_text(exc))
    else:
        log.error("renewing leases failed; retrying", exc_info=exc)


def _by_stream(keys: list[Key]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for stream, entry_id in keys:
        out.setdefault(stream, []).append(entry_id)
    return out
