"""Throughput over the last minutes, sampled from the read model each time the
dashboard reads the status: per queue, messages handed to workers
(``QueueStatus.delivered``); overall, attempts the live workers finished
(``WorkerStatus.processed``). Kept in this process' memory only: the chart
starts when the dashboard first shows a status."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..status import Status

WINDOW_S = 600.0
"""How far back the charts go."""
MIN_STEP_S = 1.0
"""Samples closer together than this are not kept (several open pages poll)."""


class _Sample:
    __slots__ = ("delivered", "processed", "t")

    def __init__(self, t: float, delivered: dict[str, int], processed: dict[str, int]) -> None:
        self.t = t
        self.delivered = delivered
        self.processed = processed


def _rate(now: dict[str, int], before: dict[str, int], dt: float) -> float:
    """Per-second growth of the counters present in both samples (a counter that
    went down was reset: a recreated group, a restarted worker)."""
    grown = sum(max(0, v - before[k]) for k, v in now.items() if k in before)
    return grown / dt


class History:
    """A window of samples and the rates between them."""

    def __init__(self, window_s: float = WINDOW_S, min_step_s: float = MIN_STEP_S) -> None:
        self.window_s = window_s
        self.min_step_s = min_step_s
        self._samples: deque[_Sample] = deque()

    def add(self, status: Status) -> None:
        t = status.at.timestamp()
        if self._samples and t - self._samples[-1].t < self.min_step_s:
            return
        self._samples.append(
            _Sample(
                t,
                {q.name: q.delivered for q in status.queues},
                {w.id: w.processed for w in status.workers},
            )
        )
        while self._samples and t - self._samples[0].t > self.window_s:
            self._samples.popleft()

    def series(self) -> dict[str, object]:
        """``t`` (end of each interval, seconds since the epoch), ``processed`` (attempts
        finished per second, all workers) and ``queues`` (name → messages delivered
        per second), one value per interval between samples."""
        samples = list(self._samples)
        names = sorted({name for s in samples for name in s.delivered})
        out_t: list[float] = []
        processed: list[float] = []
        queues: dict[str, list[float]] = {name: [] for name in names}
        for before, now in zip(samples, samples[1:], strict=False):
            dt = now.t - before.t
            out_t.append(round(now.t, 3))
            processed.append(round(_rate(now.processed, before.processed, dt), 3))
            for name in names:
                one = {name: now.delivered[name]} if name in now.delivered else {}
                queues[name].append(round(_rate(one, before.delivered, dt), 3))
        return {"t": out_t, "processed": processed, "queues": queues}
