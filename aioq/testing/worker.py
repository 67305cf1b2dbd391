"""An in-process worker for tests: start it, send work, wait until it is all done.

async with running_worker(app, queues=["default"], concurrency=10) as w:
    job = await add.kiq(1, 2)
    await w.drain()
    assert await job.result() == 3
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from .._worker.worker import Worker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from ..app import App

DRAIN_POLL = 0.02
"""Seconds between two checks of ``drain()``."""


class RunningWorker:
    """A worker running in this event loop, as ``running_worker()`` yields it."""

    def __init__(self, worker: Worker, task: asyncio.Task[None]) -> None:
        self.worker = worker
        self._task = task

    async def drain(self, timeout: float = 30.0) -> None:
        """Return once every queue this worker reads is empty (delayed messages
        included: a retry waiting for its backoff is still to run) and nothing runs.

        Raises ``TimeoutError`` after ``timeout`` seconds, and the worker's own
        error if it crashed meanwhile.
        """
        async with asyncio.timeout(timeout):
            while True:
                if self._task.done():
                    self._task.result()
                    raise RuntimeError("the worker stopped before its queues were drained")
                if await self.worker.idle():
                    return
                await asyncio.sleep(DRAIN_POLL)


@contextlib.asynccontextmanager
async def running_worker(
    app: App,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    grace: float = 5.0,
    start_timeout: float = 10.0,
    **options: Any,
) -> AsyncIterator[RunningWorker]:
    """Run a ``Worker`` for ``app`` in this event loop for the ``async with`` block;
    on exit it stops (in-flight tasks get ``grace`` seconds). ``options`` go to
    ``Worker`` (``block`` defaults to 0.1 s so the stop is quick, and
    ``unknown_task_grace`` to 0: a message for a task the app does not have is
    dead-lettered at once, not handed back for a newer worker as in a deploy)."""
    options.setdefault("block", 0.1)
    options.setdefault("unknown_task_grace", 0.0)
    worker = Worker(app, queues=queues, concurrency=concurrency, grace=grace, **options)
    task = asyncio.create_task(worker.run())
    ready = asyncio.create_task(worker.ready.wait())
    try:
        await asyncio.wait({ready, task}, timeout=start_timeout, return_when="FIRST_COMPLETED")
        if task.done():
            task.result()
        if not worker.ready.is_set():
            raise TimeoutError(f"the worker did not start within {start_timeout} s")
        yield RunningWorker(worker, task)
    finally:
        ready.cancel()
        worker.stop()
        await asyncio.wait_for(task, grace + 10)  # and a crash of the worker is raised here
