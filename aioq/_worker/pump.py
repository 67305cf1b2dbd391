"""The delayed-message pump: moves due messages (``delay``/``eta``, retries, limit
deferrals) from the delayed sets into their streams, at a cost that follows the
delayed work, not the number of queues.

Senders and ``retry.lua``'s caller lower a queue's hint in the app's due index
(``Keyspace.due``: 0 = look at once, or the retry's due time) right after they
write a delayed message. The pump asks ``due.lua`` which queues are due by Redis'
clock and pumps only those of its own queues (``Streams.pump_hinted``): hint held
a little ahead, ``pump.lua``, hint reset to the queue's next due time or removed.
A hint lowered while that ran stays (the sender's message may not have been
seen). The index is a hint only: it lives in a slot of its own, written next to
the queue scripts, never inside them; a sweep that pumps every queue (at start,
then every ``sweep_every``) finds anything a lost hint would hide — a pump that
died between holding and resetting a hint, a sender that died between its
message and its hint, delayed messages from before the index existed.

Every worker pumps; ``pump.lua`` moves each message exactly once, judged by the
Redis clock (this host's may be wrong).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._transport.broker import WorkerBroker

log = logging.getLogger("aioq.worker")

PUMP_IDLE = 0.5
"""Longest sleep of the pump, in seconds."""
PUMP_BATCH = 500
"""Most messages one pump.lua call moves from one queue."""
DUE_PAGE = 1000
"""Most due queues one due.lua call returns."""
HOLD_MS = 5000
"""How far ahead a pump holds a queue's hint while it pumps it (the retry time
if that pump dies midway)."""
SWEEP_MIN = 60.0
SWEEP_PER_QUEUE = 0.01
"""The full sweep runs every max(SWEEP_MIN, SWEEP_PER_QUEUE × queues) seconds (± 25 %)."""
SWEEP_CHUNK = 500


class Pump:
    def __init__(self, streams: WorkerBroker, queues: Sequence[str]) -> None:
        self.streams = streams
        self.queues = list(queues)
        self.mine = set(queues)
        self.wake = asyncio.Event()
        self._offset = 0
        self._next_sweep = 0.0  # at start

    def poke(self) -> None:
        """A message was put back into a delayed set here: look again now."""
        self.wake.set()

    def _sweep_every(self) -> float:
        return max(SWEEP_MIN, SWEEP_PER_QUEUE * len(self.queues)) * random.uniform(0.75, 1.25)

    async def run(self) -> None:
        outage = False
        while True:
            try:
                wake = await self.once()
                outage = False
            except Exception as exc:
                if not outage:
                    log.warning("cannot move delayed messages (%s); retrying", exc)
                    outage = True
                wake = 0.5
            if wake > 0:
                with anyio.move_on_after(max(0.001, wake)):
                    await self.wake.wait()
            self.wake = asyncio.Event()
            await asyncio.sleep(0)

    async def once(self) -> float:
        """One round; returns how long to sleep (s) before the next."""
        if time.monotonic() >= self._next_sweep:
            await self.sweep()
            self._next_sweep = time.monotonic() + self._sweep_every()
        now_ms, wait_ms, due = await self.streams.due_queues(DUE_PAGE, self._offset)
        mine = [q for q in due if q in self.mine]
        # A full page may hide more due queues behind others' (queues this worker
        # does not pump): page on at once, else start from the top next time.
        self._offset = self._offset + len(due) - len(mine) if len(due) == DUE_PAGE else 0
        wake = PUMP_IDLE if wait_ms < 0 else min(PUMP_IDLE, wait_ms / 1000)
        if len(due) == DUE_PAGE:
            wake = 0.0
        if mine:
            moved = await self.streams.pump_hinted(mine, now_ms + HOLD_MS, PUMP_BATCH)
            if any(m >= PUMP_BATCH for m in moved):
                wake = 0.0
        return wake

    async def sweep(self) -> None:
        """Pump every queue that has delayed messages and reset its hint (the safety
        net behind the index). A queue without any needs nothing: a hint it may
        still have is due and removed by the next pump of the index."""
        for i in range(0, len(self.queues), SWEEP_CHUNK):
            chunk = await self.streams.with_delayed(self.queues[i : i + SWEEP_CHUNK])
            if not chunk:
                continue
            now_ms, _, _ = await self.streams.due_queues(0, 0)
            await self.streams.pump_hinted(chunk, now_ms + HOLD_MS, PUMP_BATCH)
