"""Per-task counters for ``/metrics``, kept in plain dicts on the worker's loop.

The hot path pays a dict increment and a bisect per attempt; nothing here
knows Prometheus. ``_worker.metrics`` reads these dicts at each scrape (on the
same loop, so consistently) and hands them to prometheus-client as whole
metric families: one batch per scrape instead of one ``inc()`` per task.
"""

from __future__ import annotations

from bisect import bisect_left

BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
"""Upper bounds (seconds) of the duration histogram's buckets (+Inf implied)."""

OUTCOMES = ("succeeded", "failed", "retried", "aborted", "dead_lettered")


class Tally:
    """Outcomes per (queue, task, outcome) and durations per (queue, task)."""

    __slots__ = ("buckets", "counts", "sums")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        self.buckets: dict[tuple[str, str], list[int]] = {}
        """Per (queue, task): observations per bucket (not cumulative), +Inf last."""
        self.sums: dict[tuple[str, str], float] = {}

    def outcome(self, queue: str, task: str, outcome: str) -> None:
        key = (queue, task, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1

    def ran(self, queue: str, task: str, outcome: str, seconds: float) -> None:
        """An attempt ran to ``outcome`` in ``seconds``."""
        self.outcome(queue, task, outcome)
        key = (queue, task)
        row = self.buckets.get(key)
        if row is None:
            row = self.buckets[key] = [0] * (len(BUCKETS) + 1)
            self.sums[key] = 0.0
        row[bisect_left(BUCKETS, seconds)] += 1
        self.sums[key] += seconds
