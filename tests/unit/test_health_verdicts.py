"""The probes' verdicts from a worker's memory (``_worker/health.py``); the HTTP
side against a real worker is in tests/integration/test_health.py."""

from __future__ import annotations

import time

import aioq
from aioq._worker.health import LOOP_LAG_MAX, Health


def started_worker() -> tuple[aioq.Worker, Health]:
    worker = aioq.Worker(aioq.App("redis://127.0.0.1:1/0", visibility_timeout=2.0))
    worker.ready.set()

    class Renewals:  # what the dispatcher exposes to the probes
        renewed_at = time.monotonic()

    worker._dispatcher = Renewals()  # type: ignore[assignment]
    return worker, Health(worker)


def test_a_late_event_loop_is_not_live() -> None:
    _, health = started_worker()
    assert health.live() == (True, "ok")
    health.ticked = time.monotonic() - LOOP_LAG_MAX - 1
    ok, why = health.live()
    assert not ok and "event loop" in why


def test_not_ready_before_start_while_stopping_and_while_reads_fail() -> None:
    worker, health = started_worker()
    assert health.ready() == (True, "ok")
    worker.read_failing = True
    assert health.ready() == (False, "cannot read from Redis")
    worker.read_failing = False
    worker.stop()
    assert health.ready() == (False, "stopping")
    fresh = aioq.Worker(aioq.App("redis://127.0.0.1:1/0"))
    assert Health(fresh).ready() == (False, "starting")
    assert Health(fresh).live() == (True, "ok")  # not started yet: nothing to renew
