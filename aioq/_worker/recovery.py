"""Recovery: taking over what dead or stalled workers left, and removing their
consumers from the groups.

A recovery pass (``claim.lua``) takes entries *other* consumers let idle past
0.8 × the visibility timeout. This worker's own idle entries are never stolen
from itself: it takes back (``reclaim.lua``) only those it no longer holds —
given back after a failed start, or left by a task that went wrong — so even a
single worker loses nothing.

The sweep removes consumers idle longer than ``Lease.forget_idle_ms`` (at
least 10 minutes and 10 visibility timeouts) that hold no pending entry; the
check and the removal are one script, since removing a consumer drops its
pending entries. Removing a live consumer that holds nothing is harmless: its
next read creates it again.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

import anyio

from .._transport.connection import OUTAGE_ERRORS, RedisError, outage_text
from .._transport.keys import LEVELS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._transport.broker import WorkerBroker
    from .._transport.types import Entry
    from .lease import Key, Lease, LeaseKeeper
    from .reader import ManyQueues

log = logging.getLogger("aioq.worker")

SCAN_PER_STREAM = 0.004
"""Seconds between two pending-summary scans per level stream scanned (many queues
only; at least ``claim_every``, at most 0.4 visibility timeouts): ``pending.lua``
costs Redis about 3.5 µs per stream (an EXISTS and an XPENDING called from Lua),
so a scan stays under 0.1 % of a core."""
FULL_SCAN_EVERY = 300.0
"""Seconds between two scans of every level stream, quiet ones included: a safety
net for what the watch cannot see (a group's last id set back by hand)."""


class Recovery:
    def __init__(
        self,
        streams: WorkerBroker,
        queues: Sequence[str],
        consumer: str,
        lease: Lease,
        keeper: LeaseKeeper,
        levels: dict[str, tuple[str, int]] | None = None,
    ) -> None:
        """``levels``: every level stream of ``queues`` → (queue, level), when the
        worker has that map already (``ManyQueues.order``: built once, not again
        here, 10,000 keys on 1,000 queues)."""
        self.streams = streams
        self.queues = list(queues)
        self.consumer = consumer
        self.lease = lease
        self.keeper = keeper
        self._cursors = {q: [b"0-0"] * LEVELS for q in self.queues}
        if levels is None:
            levels = {
                streams.level_stream(q, level): (q, level)
                for q in self.queues
                for level in range(LEVELS)
            }
        self._levels = levels
        self._by_queue = {q: [""] * LEVELS for q in self.queues}
        for key, (queue, level) in levels.items():
            self._by_queue[queue][level] = key
        """Each queue's level streams (looked up, not filtered out of ``_levels``: that
        is queues × streams per sweep, minutes of CPU on 10,000 queues)."""
        self._next = 0.0
        self.many: ManyQueues | None = None
        """With many queues, the reader: a pass then claims only in queues a
        pending-summary scan showed can hold something to claim, instead of one
        claim.lua per queue, and the scan looks only at the level streams that
        exist and are not *quiet* (see ``_candidate_queues``)."""
        self._candidates: list[str] = []
        self._next_scan = 0.0
        self._next_full = 0.0
        self._scan: set[str] = set()
        """The level streams the next scan looks at: every existing one but those a
        scan found quiet (nothing pending, cold and untouched since)."""

    def due(self) -> bool:
        """Whether a pass is due now (about four a second, jittered); if so, the
        next one is scheduled."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.lease.claim_every * random.uniform(0.75, 1.25)
        return True

    async def claim(self, n: int) -> list[Entry]:
        """Up to ``n`` entries whose lease lapsed (a dead or stalled worker's), and
        this worker's own idle entries it no longer holds."""
        if not self.keeper.may_recover():
            return []  # an outage just ended: live workers renew first
        if self.keeper.lease_stale():
            await self.keeper.renew_held()  # own leases first, after a stall
        claimed: list[Entry] = []
        queues = self.queues if self.many is None else await self._candidate_queues()
        for queue in queues:
            if len(claimed) >= n:
                break
            found = await self.streams.claim(
                queue,
                self.consumer,
                self.lease.claim_idle_ms,
                self._cursors[queue],
                n - len(claimed),
            )
            self._cursors[queue] = found.cursors
            if found.deleted:
                log.warning(
                    "%d pending message(s) of queue %r were deleted before they were processed",
                    found.deleted,
                    queue,
                )
            if found.entries:
                # The claim counted this delivery; a message that keeps coming back
                # is dead-lettered by max_deliveries instead of looping.
                log.warning(
                    "recovered %d message(s) of queue %r from a worker that stopped "
                    "renewing its lease",
                    len(found.entries),
                    queue,
                )
            claimed.extend(found.entries)
            orphans = [key for key in found.mine if not self.keeper.holds(key)]
            if orphans and len(claimed) < n:
                claimed.extend(await self._take_back(orphans[: n - len(claimed)]))
        return claimed

    async def _candidate_queues(self) -> list[str]:
        """Queues where a claim may find something: another consumer's pending entries,
        or more of this worker's own than it holds. An entry can be claimed only
        once idle for ``claim_idle_ms``; the scan runs more often than that (at
        most 0.4 visibility timeouts apart), so it never delays a recovery.

        The scan skips *quiet* streams: cold (``ManyQueues``) streams in which an
        earlier scan found nothing pending and that the reader has not touched
        since. Entries become pending only when a read delivers them, and one
        delivered after a fetch left the stream cold was added after its mark: the
        watch or a peek sees it and turns the stream hot, so it is scanned again
        (and a fetch of this worker's own touches it). An idle worker's scan thus
        costs nothing, whatever the number of queues; every stream is scanned
        again every ``FULL_SCAN_EVERY`` s all the same."""
        now = time.monotonic()
        many = self.many
        if now < self._next_scan or many is None:
            return self._candidates
        if now >= self._next_full:
            self._next_full = now + FULL_SCAN_EVERY
            self._scan = set(many.existing())
            many.take_changed()
        else:
            missing = many.missing
            self._scan.update(k for k in many.take_changed() if k not in missing)
        every = max(self.lease.claim_every, SCAN_PER_STREAM * len(self._scan))
        self._next_scan = now + min(every, self.lease.claim_idle_ms / 2000)
        if not self._scan:
            self._candidates = []
            return self._candidates
        streams = list(self._scan)
        summaries = await self.streams.pending_summaries(streams)
        held: dict[str, int] = {}
        for stream, _ in self.keeper.held():
            held[stream] = held.get(stream, 0) + 1
        wanted: set[str] = set()
        for stream, by_consumer in summaries.items():
            mine = by_consumer.get(self.consumer, 0)
            if sum(by_consumer.values()) > mine or mine > held.get(stream, 0):
                wanted.add(self._levels[stream][0])
        # Quiet now: nothing pending and cold. One a fetch touched while this scan
        # waited is in ``many.changed`` again: the next scan takes it back.
        hot = many.hot
        self._scan.difference_update(s for s in streams if s not in summaries and s not in hot)
        self._candidates = [q for q in self.queues if q in wanted]
        return self._candidates

    def wake_at(self) -> float:
        """When (monotonic) the reader should run a pass at the latest while it
        waits for work: the next claim while there are queues to claim in, else
        the next scan while some stream is not quiet, else the next full scan."""
        if self._candidates:
            return self._next
        if self.many is not None and (self._scan or self.many.changed):
            return max(self._next, self._next_scan)
        return max(self._next, self._next_full)

    async def _take_back(self, orphans: list[Key]) -> list[Entry]:
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry_id in orphans:
            by_stream.setdefault(stream, []).append(entry_id)
        taken: list[Entry] = []
        for stream, ids in by_stream.items():
            queue, level = self._levels[stream]
            taken.extend(
                await self.streams.reclaim(
                    queue, level, self.consumer, ids, self.lease.claim_idle_ms
                )
            )
        if taken:
            log.warning(
                "took back %d message(s) this worker had left pending without running them",
                len(taken),
            )
        return taken

    async def sweep_forever(self) -> None:
        """Now and then (``Lease.sweep_every`` ± 50 %), remove the consumers of dead
        workers that hold nothing."""
        while True:
            # One forget_consumers.lua per queue: spread thinner over many queues.
            scale = max(1.0, len(self.queues) / 1000)
            await anyio.sleep(self.lease.sweep_every * scale * random.uniform(0.5, 1.5))
            await self.sweep()

    async def sweep(self) -> list[str]:
        removed: list[str] = []
        for queue in self.queues:
            streams = self._by_queue[queue]
            try:
                gone = await self.streams.forget_consumers(
                    streams, self.lease.forget_idle_ms, keep=self.consumer
                )
            except OUTAGE_ERRORS as exc:
                log.debug("consumer sweep skipped (%s)", outage_text(exc))
                return removed
            except RedisError as exc:
                log.warning("consumer sweep of queue %r failed (%s)", queue, exc)
                continue
            if gone:
                names = sorted(set(gone))
                log.info(
                    "removed %d idle consumer(s) holding nothing from queue %r: %s",
                    len(names),
                    queue,
                    ", ".join(names),
                )
            removed.extend(gone)
        return removed

    async def forget(self, consumer: str) -> None:
        """Remove ``consumer`` (this worker, leaving) from every group where it holds
        nothing; a consumer with pending entries stays, so they are recovered."""
        await self.streams.forget_consumers_of(list(self._by_queue.values()), consumer)
