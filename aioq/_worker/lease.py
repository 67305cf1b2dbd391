"""The timing of leases, derived from the app's ``visibility_timeout`` (VT).

A live worker renews the lease of each message it holds every VT/10, so a
held message is never idle much longer than that. Any message idle longer
than 0.8 VT therefore belongs to a worker that stopped renewing — dead or
stalled — and recovery passes (about four a second) take it over: a dead
worker's messages restart between 0.7 VT and about 0.8 VT + 0.25 s after it
died. A worker that has not renewed for half the VT suspects its leases and
checks ownership before writing completions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    import asyncio

    from .._transport.streams import Streams
    from .limits import Limits

log = logging.getLogger("aioq.worker")


@dataclass(frozen=True, slots=True)
class Lease:
    renew_every: float
    claim_idle_ms: int
    claim_every: float
    stale_after: float

    @classmethod
    def for_timeout(cls, visibility_timeout: float) -> Lease:
        vt = visibility_timeout
        return cls(
            renew_every=max(0.05, vt / 10),
            claim_idle_ms=max(1, int(vt * 800)),
            claim_every=max(0.05, min(0.25, vt / 10)),
            stale_after=vt / 2,
        )


class LeaseKeeper:
    """The dispatcher's side of leases: renewing them while tasks run, and
    telling whether they may have lapsed."""

    streams: Streams
    worker_id: str
    lease: Lease
    limits: Limits
    inflight: dict[tuple[str, bytes], asyncio.Task[Any]]
    _taken_over: set[tuple[str, bytes]]
    renewed_at: float

    async def check_aborted(self) -> None:
        raise NotImplementedError

    def lease_stale(self) -> bool:
        """True when leases may have lapsed: no renewal for most of the timeout."""
        return time.monotonic() - self.renewed_at > self.lease.stale_after

    async def owned_elsewhere(self, keys: list[tuple[str, bytes]]) -> set[tuple[str, bytes]]:
        """Renew the leases of ``keys``; return those another consumer owns now."""
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry_id in keys:
            by_stream.setdefault(stream, []).append(entry_id)
        lost: set[tuple[str, bytes]] = set()
        for stream, ids in by_stream.items():
            lost.update((stream, i) for i in await self.streams.renew(stream, self.worker_id, ids))
        return lost

    async def heartbeat(self) -> None:
        """Renew the lease of every in-flight entry well within the visibility timeout,
        so a long task on a live worker is never taken over by another."""
        interval = self.lease.renew_every
        while True:
            await anyio.sleep(interval)
            try:
                await self.check_aborted()
            except Exception as exc:
                log.debug("abort check failed: %s", exc)
            began = time.monotonic()
            by_stream: dict[str, list[bytes]] = {}
            for stream, entry_id in list(self.inflight):
                by_stream.setdefault(stream, []).append(entry_id)
            renewed_all = True
            for stream, ids in by_stream.items():
                try:
                    lost = await self.streams.renew(stream, self.worker_id, ids)
                except Exception as exc:
                    log.warning("could not renew leases (%s)", exc)
                    renewed_all = False
                    break
                for entry_id in lost:
                    task = self.inflight.get((stream, entry_id))
                    if task is not None:
                        log.warning(
                            "lost the lease on %s (another worker took it over); "
                            "cancelling it here",
                            entry_id.decode(),
                        )
                        self._taken_over.add((stream, entry_id))
                        task.cancel()
            if renewed_all:
                self.renewed_at = began
            try:
                await self.limits.renew()
            except Exception as exc:
                log.warning("could not renew max_running slots (%s)", exc)
