"""Prometheus ``/metrics`` (the optional extra ``aioq[metrics]``: prometheus-client).

A worker (``aioq worker --metrics-port``) serves its per-task counters
(``_worker.tally``: plain dicts on the hot path), its slots, and the queue
gauges of ``App.status()`` for its queues; ``aioq exporter`` serves the queue
gauges alone, without running a worker (for Prometheus or KEDA).

At each scrape the queue gauges are read (one ``App.status()``, a few
pipelined reads) and every family is built from the worker's dicts in one
go by a custom collector: prometheus-client is never called per task.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, cast

from ..errors import ConfigurationError
from .httpd import Response, serving
from .tally import BUCKETS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from prometheus_client.registry import Collector

    from .._core.status import QueueStatus
    from ..app import App
    from .worker import Worker

log = logging.getLogger("aioq.metrics")

EXTRA_HINT = "Prometheus metrics need prometheus-client: pip install 'aioq[metrics]'"


def require(port: int | None = 0) -> int | None:
    """Raise ``ConfigurationError`` naming the extra when prometheus-client is
    missing and metrics are wanted (``port`` not None); returns ``port``."""
    if port is None:
        return None
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigurationError(EXTRA_HINT) from None
    return port


QUEUE_GAUGES = (
    ("aioq_queue_ready", "Messages no worker has taken yet", "ready"),
    ("aioq_queue_scheduled", "Messages waiting for their time (delays, deferrals)", "scheduled"),
    ("aioq_queue_running", "Messages taken by a worker and not acked yet", "running"),
    ("aioq_queue_dead", "Dead letters", "dead"),
)


class Snapshot:
    """What one scrape shows: set on the event loop, read by the collector."""

    def __init__(self, worker: Worker | None) -> None:
        self.worker = worker
        self.queues: list[QueueStatus] = []


def _collector(snap: Snapshot) -> Collector:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    class _Aioq:
        """A custom collector (prometheus-client needs only ``collect``)."""

        def collect(self) -> Iterator[object]:
            for name, doc, field in QUEUE_GAUGES:
                g = GaugeMetricFamily(name, doc, labels=["queue"])
                for q in snap.queues:
                    g.add_metric([q.name], getattr(q, field))
                yield g
            age = GaugeMetricFamily(
                "aioq_queue_oldest_ready_age_seconds",
                "Age of the oldest ready message, by Redis' clock (0 when none)",
                labels=["queue"],
            )
            for q in snap.queues:
                age.add_metric([q.name], q.oldest_ready_age_s or 0.0)
            yield age
            worker = snap.worker
            if worker is None:
                return
            busy = max(0, worker.running)
            slots = GaugeMetricFamily("aioq_worker_slots", "This worker's slots", labels=["state"])
            slots.add_metric(["busy"], busy)
            slots.add_metric(["free"], max(0, worker.concurrency - busy))
            yield slots
            tally = worker.tally
            jobs = CounterMetricFamily(
                "aioq_jobs",
                "Attempts by outcome (succeeded, failed, retried, aborted, dead_lettered)",
                labels=["queue", "task", "outcome"],
            )
            for key, n in tally.counts.items():
                jobs.add_metric(list(key), n)
            yield jobs
            hist = HistogramMetricFamily(
                "aioq_job_duration_seconds",
                "Time attempts took to run",
                labels=["queue", "task"],
            )
            for cell, row in tally.buckets.items():
                cumulative, total = [], 0
                for bound, n in zip((*map(str, BUCKETS), "+Inf"), row, strict=True):
                    total += n
                    cumulative.append((bound, float(total)))
                hist.add_metric(list(cell), cumulative, tally.sums[cell])
            yield hist

    return cast("Collector", _Aioq())


class Exposition:
    """Serves ``/metrics`` for a worker, or for ``app``'s queues alone."""

    def __init__(self, app: App, worker: Worker | None, queues: Sequence[str] | None) -> None:
        require()
        from prometheus_client import CollectorRegistry

        self.app = app
        self.queues = list(queues) if queues else None
        self.snapshot = Snapshot(worker)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_collector(self.snapshot))

    async def _metrics(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        try:
            self.snapshot.queues = (await self.app.status(self.queues)).queues
        except Exception as exc:  # Redis away: the worker's own counters still count
            log.debug("queue gauges unavailable (%s)", exc)
            self.snapshot.queues = []
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)

    @contextlib.asynccontextmanager
    async def serving(self, host: str, port: int) -> AsyncIterator[None]:
        async with serving(host, port, {"/metrics": self._metrics}):
            yield
