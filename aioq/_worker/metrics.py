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
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence

    from prometheus_client.registry import Collector

    from .._core.status import QueueStatus
    from .host import WorkerHost
    from .view import WorkerView

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


PARTITION_GAUGES = tuple(
    (name.replace("aioq_queue_", "aioq_queue_partition_"), f"{doc}, per partition", field)
    for name, doc, field in QUEUE_GAUGES
)
"""``aioq_queue_partition_ready{queue="hot",partition="hot#3"}``, … (``aioq_queue_``
prefix: under ``-w N`` they are taken once, like the queue gauges)."""


class Snapshot:
    """What one scrape shows: set on the event loop, read by the collector."""

    def __init__(self, worker: WorkerView | None) -> None:
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
            # a partitioned queue: its sum above, each partition in families of
            # their own (so summing a family never counts a message twice)
            for name, doc, field in PARTITION_GAUGES:
                g = GaugeMetricFamily(name, doc, labels=["queue", "partition"])
                for q in snap.queues:
                    for p in q.partitions:
                        g.add_metric([q.name, p.name], getattr(p, field))
                yield g
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

    def __init__(
        self, app: WorkerHost, worker: WorkerView | None, queues: Sequence[str] | None
    ) -> None:
        require()
        from prometheus_client import CollectorRegistry

        self.app = app
        # logical names: a partitioned queue is reported as its sum and its partitions
        self.queues = list(dict.fromkeys(map(app.partitions.logical, queues))) if queues else None
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


# -- -w N: one endpoint for every child --------------------------------------

MERGE_TIMEOUT = 2.0
"""Seconds the parent waits for each child's ``/metrics`` during a scrape."""


def child_port(port: int, slot: int) -> int:
    """Under ``-w N`` the parent serves ``port``; child ``slot`` serves port + 1 + slot."""
    return port + 1 + slot


def merge(texts: Sequence[str]) -> bytes:
    """One exposition from the children's: counters, histograms and slots are
    summed; the queue gauges (the same Redis read by each child) are taken once."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import Metric
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type)
                values[fam.name] = {}
            summed = not fam.name.startswith("aioq_queue_")
            into = values[fam.name]
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if summed:
                    into[key] = into.get(key, 0.0) + s.value
                else:
                    into.setdefault(key, s.value)
    for name, fam in families.items():
        for (sample, labels), value in values[name].items():
            fam.add_sample(sample, dict(labels), value)

    class _Merged:
        def collect(self) -> Iterator[Metric]:
            yield from families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(cast("Collector", _Merged()))
    out: bytes = generate_latest(registry)
    return out


def serve_merged(host: str, port: int, children: Sequence[int]) -> Callable[[], None]:
    """Serve ``/metrics`` merged from the children's ports, on a thread of the
    ``-w N`` supervisor; returns the function that stops it."""
    import http.server
    import threading
    import urllib.request

    from prometheus_client import CONTENT_TYPE_LATEST

    def scrape(child: int) -> str | None:
        try:
            url = f"http://{_connectable(host)}:{child}/metrics"
            with urllib.request.urlopen(url, timeout=MERGE_TIMEOUT) as reply:
                text: str = reply.read().decode()
                return text
        except OSError:
            return None  # a child restarting: its counters start again from 0

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = merge([t for t in map(scrape, children) if t is not None])
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="aioq-metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return stop


def _connectable(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)
