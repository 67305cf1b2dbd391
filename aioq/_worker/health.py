"""``/livez`` and ``/readyz`` of a worker (``Worker(health_port=…)``,
``aioq worker --health-port``).

- ``/livez``: the event loop is responsive (a ticker on it ran lately) and the
  heartbeat thread renewed the leases within one visibility timeout. A worker
  that fails it holds leases it cannot keep: restarting it is the cure.
- ``/readyz``: connected and reading: started, not stopping, the read loop is
  not meeting an outage, and the last renewal (the heartbeat's round trip to
  Redis) is a few beats old at most — a Redis that hangs (paused, a network
  partition) stops renewals before any read reports an error.

Both read only what the worker already keeps in memory: no Redis command per probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

log = logging.getLogger("aioq.worker")

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from .httpd import Response
    from .view import WorkerView

TICK = 0.25
"""Seconds between two ticks of the loop-responsiveness ticker."""
LOOP_LAG_MAX = 5.0
"""A loop whose ticker is this many seconds late is not responsive."""
READY_BEATS = 3
"""Renewals that may be missed before the worker stops being ready."""
READY_MIN_S = 1.0


class Health:
    """The probes' verdicts, from the worker's memory."""

    def __init__(self, worker: WorkerView) -> None:
        self.worker = worker
        self.ticked = time.monotonic()

    def _renewal_age(self) -> float:
        dispatcher = self.worker._dispatcher
        if dispatcher is None:
            return float("inf")
        return time.monotonic() - dispatcher.renewed_at

    def live(self) -> tuple[bool, str]:
        lag = time.monotonic() - self.ticked - TICK
        if lag > LOOP_LAG_MAX:
            return False, f"event loop {lag:.1f}s late"
        age = self._renewal_age()
        vt = self.worker.app.settings.visibility_timeout
        if self.worker.ready.is_set() and age > vt:
            return False, f"leases not renewed for {age:.1f}s (visibility timeout {vt:g}s)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        w = self.worker
        if not w.ready.is_set():
            return False, "starting"
        if w.stopping:
            return False, "stopping"
        if w.read_failing:
            return False, "cannot read from Redis"
        age = self._renewal_age()
        limit = max(READY_MIN_S, READY_BEATS * w._lease.renew_every)
        if age > limit:
            return False, f"no round trip to Redis for {age:.1f}s"
        return True, "ok"

    async def _livez(self) -> Response:
        return _verdict(*self.live())

    async def _readyz(self) -> Response:
        return _verdict(*self.ready())

    @contextlib.asynccontextmanager
    async def serving(self, host: str, port: int) -> AsyncIterator[None]:
        """Serve the probes (and tick the loop's ticker) for the duration of the block."""
        routes = {"/livez": self._livez, "/readyz": self._readyz}
        from .httpd import serving  # only with a health port (worker memory)

        async with serving(host, port, routes):
            ticker = asyncio.create_task(self._tick())
            try:
                yield
            finally:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker

    async def _tick(self) -> None:
        while True:
            self.ticked = time.monotonic()
            await asyncio.sleep(TICK)


def _verdict(ok: bool, why: str) -> Response:
    return (200 if ok else 503), "text/plain; charset=utf-8", f"{why}\n".encode()


@contextlib.asynccontextmanager
async def endpoints(worker: WorkerView) -> AsyncIterator[None]:
    """The worker's HTTP endpoints asked for (``health_port``, ``metrics_port``),
    up from before it connects until it has stopped."""
    async with contextlib.AsyncExitStack() as stack:
        if worker.health_port is not None:
            health = Health(worker)
            await stack.enter_async_context(health.serving(worker.health_host, worker.health_port))
        if worker.metrics_port is not None:
            from .metrics import Exposition

            exposition = Exposition(worker.app, worker, worker.queues)
            await stack.enter_async_context(
                exposition.serving(worker.health_host, worker.metrics_port)
            )
        yield
