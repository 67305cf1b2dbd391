"""Faults of Reliability II with real worker processes: Redis out of memory while
jobs complete, and a worker stalled (SIGSTOP) past its lease that comes back.

Uses the fixtures of ``test_chaos`` (a private broker and oracle Redis, a fleet of
``aioq worker`` processes); executions are counted in the oracle.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.chaos import chaosapp
from tests.chaos.conftest import Chaos, wait_started

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


def _oom(chaos: Chaos, on: bool) -> None:
    """Make Redis refuse every write that needs memory (noeviction), or stop."""
    client = chaos.broker.client()
    try:
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1 if on else 0)
    finally:
        client.close()


def _pending(chaos: Chaos) -> int:
    client = chaos.broker.client()
    try:
        return int(client.xpending(chaos.app.keys.stream("default"), "workers")["pending"])
    finally:
        client.close()


@pytest.mark.parametrize("kill", [False, True], ids=["outage-ends", "worker-killed"])
async def test_out_of_memory_while_completing_loses_nothing(chaos: Chaos, kill: bool) -> None:
    """Redis refuses the outcome writes (OOM, noeviction) of jobs that just finished.
    Nothing may be acked without its outcome: the messages stay pending. When the
    outage ends the same worker writes them (no re-run); if instead the worker is
    killed during the outage, another worker re-runs exactly those and nothing is
    lost."""
    concurrency = 8
    chaos.fleet.concurrency = concurrency
    first = chaos.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(1200,) for _ in range(3 * concurrency)])
    ids = [j.id for j in jobs]
    await wait_started(chaos, concurrency)
    _oom(chaos, True)
    try:
        deadline = time.monotonic() + 10
        while sum(chaos.counts("finishes").values()) < concurrency:
            assert time.monotonic() < deadline, chaos.fleet.logs()[-3000:]
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the completer has tried, and been refused, a few times
        assert _pending(chaos) == concurrency  # finished, but nothing acked
        if kill:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            chaos.fleet.kills += 1
    finally:
        _oom(chaos, False)
    if kill:
        chaos.fleet.spawn()
    states = await chaos.wait_final(ids, timeout=60)
    figures = chaos.report(
        f"out of memory while completing ({'killed' if kill else 'outage'})", ids, states
    )
    assert figures["lost"] == 0
    assert figures["duplicates"] == (concurrency if kill else 0)
    assert all(p.poll() is None for p in chaos.fleet.alive())
    if not kill:
        assert first.poll() is None
    assert chaos.leftovers() == (0, 0)
    assert "stay pending" in chaos.fleet.logs()
