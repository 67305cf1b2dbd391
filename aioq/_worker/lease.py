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

from dataclasses import dataclass


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
