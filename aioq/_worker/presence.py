"""A worker's registry entry: what ``App.status()`` / ``aioq workers`` show of it.

The heartbeat thread writes it in its lease-renewal pipeline (no round trip of
its own), at most every ``REGISTER_EVERY`` seconds, with a TTL of a few beats:
a worker that dies disappears from the list within seconds, one that stops
cleanly removes it at once. The counters are kept in the worker's memory and
only copied here: no write per task.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import TYPE_CHECKING

from .._transport.connection import REDIS_ERRORS, outage_text
from .._version import __version__

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._transport.broker import WorkerBroker
    from .dispatch import Dispatcher
    from .lease import Lease
    from .view import WorkerView

log = logging.getLogger("aioq.worker")

REGISTER_EVERY = 1.0
"""Seconds between two writes of the entry, at least (it rides on the heartbeat,
so it is written every max(this, renew_every): every VT/10 for a long VT)."""


def every(lease: Lease) -> float:
    """Seconds between two writes of the entry."""
    return max(REGISTER_EVERY, lease.renew_every)


def entry(worker: WorkerView, dispatcher: Dispatcher) -> Callable[[], dict[str, str | int]]:
    """The entry as the heartbeat thread writes it (plain attribute reads of the
    worker's memory: safe from that thread)."""
    fixed: dict[str, str | int] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "queues": ",".join(worker.queues),
        "concurrency": worker.concurrency,
        "started_ms": int(time.time() * 1000),
        "version": __version__,
    }

    def now() -> dict[str, str | int]:
        return {
            **fixed,
            "running": max(0, worker.running),
            "processed": dispatcher.processed,
            "failed": dispatcher.failed,
        }

    return now


async def arrive(session: WorkerBroker) -> None:
    """At start: forget workers that were killed (their entries expired)."""
    try:
        await session.prune_workers()
    except REDIS_ERRORS as exc:  # only tidiness: the next worker's start does it
        log.info("could not prune the worker registry (%s)", outage_text(exc))


async def leave(session: WorkerBroker, worker_id: str) -> None:
    """A clean exit removes the entry at once (else it expires a few beats later)."""
    try:
        await session.forget_worker(worker_id)
    except REDIS_ERRORS as exc:
        log.info("could not remove this worker's registry entry (%s)", outage_text(exc))
