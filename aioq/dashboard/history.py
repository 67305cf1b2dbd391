"""Throughput over the last minutes, sampled from the read model each time the
dashboard reads the status: per queue, the rate of ``QueueStatus.delivered``
(messages handed to workers, read from Redis at that moment, so the rate is
exact between two reads). Kept in this process' memory only: the chart starts
when the dashboard first shows a status.

(The workers' ``processed`` counters are not charted: they reach Redis with the
heartbeat, every few seconds, so their rate comes in bursts.)"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..status import Status

WINDOW_S = 600.0
"""How far back the charts go."""
MIN_STEP_S = 1.0
"""Samples closer together than this are not kept (several open pages poll)."""


class History:
    """A window of (time, delivered per queue) samples and the rates between them."""

    def __init__(self, window_s: float = WINDOW_S, min_step_s: float = MIN_STEP_S) -> None:
        self.window_s = window_s
        self.min_step_s = min_step_s
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def add(self, status: Status) -> None:
        t = status.at.timestamp()
        if self._samples and t - self._samples[-1][0] < self.min_step_s:
            return
        self._samples.append((t, {q.name: q.delivered for q in status.queues}))
        while self._samples and t - self._samples[0][0] > self.window_s:
            self._samples.popleft()

    def series(self) -> dict[str, object]:
        """``t`` (end of each interval, seconds since the epoch), ``queues`` (name →
        messages delivered per second in each interval) and ``total`` (all queues).
        A counter that went down was reset (its group was recreated): no negative
        rate; a queue missing from either sample counts 0 for that interval."""
        samples = list(self._samples)
        names = sorted({name for _, counts in samples for name in counts})
        times: list[float] = []
        queues: dict[str, list[float]] = {name: [] for name in names}
        total: list[float] = []
        for (t0, before), (t1, now) in zip(samples, samples[1:], strict=False):
            times.append(round(t1, 3))
            rates = {
                name: max(0, now[name] - before[name]) / (t1 - t0)
                if name in now and name in before
                else 0.0
                for name in names
            }
            for name in names:
                queues[name].append(round(rates[name], 3))
            total.append(round(sum(rates.values()), 3))
        return {"t": times, "total": total, "queues": queues}
