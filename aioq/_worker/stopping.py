"""When a worker stops: on a signal, or (burst mode) once there is nothing left to do."""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

import anyio

from .._transport.connection import REDIS_ERRORS, outage_text

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from .view import WorkerView

log = logging.getLogger("aioq.worker")

BURST_POLL = 0.1
"""Seconds between two checks of a burst worker for an empty backlog."""


class StoppedWhileStarting(SystemExit):
    """A SIGTERM/SIGINT came before the worker read anything: nothing to finish.

    A ``SystemExit`` so that the event loop lets it through from wherever the
    signal lands (asyncio and uvloop re-raise it from callbacks)."""

    def __init__(self, signum: int) -> None:
        super().__init__(0)
        self.signum = signum


def stop_while_starting() -> None:
    """Until ``handle_signals`` takes over, a SIGTERM/SIGINT ends the process at
    once with exit status 0: the worker is importing the app, waiting for Redis
    or preparing its queues, and holds no message yet. (Otherwise SIGTERM's default
    action kills it with status -15, and SIGINT prints a traceback.)"""

    def stop(signum: int, frame: object) -> None:
        raise StoppedWhileStarting(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


async def handle_signals(
    worker: WorkerView, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """First SIGTERM/SIGINT: stop reading, let in-flight tasks finish; second: cancel
    them. Started with ``TaskGroup.start``: once it returns, the receiver is open (the
    worker reads nothing before that, so no signal can end it holding messages)."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if not worker.stopping:
                log.info(
                    "received %s: finishing %d in-flight task(s) within %gs "
                    "(send again to stop at once)",
                    signal.Signals(signum).name,
                    worker.running,
                    worker.grace,
                )
                worker.stop()
            else:
                log.warning(
                    "received %s again: cancelling %d in-flight task(s)",
                    signal.Signals(signum).name,
                    worker.running,
                )
                worker.kill()


async def idle(worker: WorkerView) -> bool:
    """True when ``worker`` holds no message and its queues hold none: not ready,
    not held by another worker, not delayed, however far ahead (a retry waiting
    for its backoff is unfinished work; a far ``eta`` keeps a burst worker up
    until it is due and has run).

    ``running`` is read before and after the count: a message taken meanwhile is
    still in its stream until acked, and what a task enqueues is in Redis before
    its slot is freed."""
    if worker.running:
        return False
    return await worker.streams.backlog(worker.queues) == 0 and not worker.running


async def stop_when_idle(worker: WorkerView) -> None:
    """Burst mode: ``worker.stop()`` once ``idle()``."""
    while True:
        try:
            if await idle(worker):
                break
        except REDIS_ERRORS as exc:
            log.info("burst: cannot count the backlog yet (%s)", outage_text(exc))
        await anyio.sleep(BURST_POLL)
    log.info("burst: queues empty and nothing running; stopping")
    worker.stop()
