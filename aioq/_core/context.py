"""The per-attempt context a task can ask for by annotating a parameter ``aioq.Context``."""

from __future__ import annotations

import asyncio
import concurrent.futures
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from .message import Progress, encode, now_ms

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping

    from .host import AppHandle


class Running(NamedTuple):
    """The job an executor runs, for log lines logged inside it (``--log-format json``)."""

    job_id: str
    task: str
    queue: str
    attempt: int


NO_STATE: Mapping[str, Any] = MappingProxyType({})
"""``ctx.state`` where no ``on_worker_start`` hook returned anything."""

CURRENT_JOB: ContextVar[Running | None] = ContextVar("aioq_current_job", default=None)
"""Set by the worker in each executor (its own asyncio task, so it never leaks
to another job) and copied into threads running sync tasks."""


class Context:
    """What a running task knows about itself.

    Declare a parameter annotated ``aioq.Context`` (any name) and the worker
    passes it in; it is never part of the message::

        @app.task
        async def resize(ctx: aioq.Context, image_id: int) -> None:
            log.info("job %s attempt %d", ctx.job_id, ctx.attempt)

    ``ctx.state`` is what the app's ``@app.on_worker_start`` hooks returned in this
    worker process (their mappings merged, read-only): shared resources such as
    a database pool. ``ctx.headers`` are the message's headers (set by enqueue
    hooks); what a task or middleware leaves in them goes on to the steps of its
    workflow that follow it.
    """

    __slots__ = (
        "_headers",
        "_loop",
        "_report",
        "_sent",
        "app",
        "attempt",
        "job_id",
        "queue",
        "state",
        "task_name",
        "worker_id",
    )

    def __init__(
        self,
        *,
        app: AppHandle,
        job_id: str,
        task_name: str,
        queue: str,
        attempt: int,
        worker_id: str,
        report: Callable[[str, bytes], Coroutine[Any, Any, None]] | None = None,
        state: Mapping[str, Any] = NO_STATE,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.job_id = job_id
        self.task_name = task_name
        self.queue = queue
        self.attempt = attempt
        self.worker_id = worker_id
        self._report = report
        self.state = state
        self._sent = headers  # the message's; copied on first use of ctx.headers
        self._headers: dict[str, str] | None = None
        # The worker's loop, where reports are written: a sync task calls
        # progress() from a worker thread and hands the write over to it.
        self._loop = _running_loop() if report is not None else None

    @property
    def headers(self) -> dict[str, str]:
        """The message's headers (a copy: changes go to the workflow's next steps,
        not to this job's retries)."""
        headers = self._headers
        if headers is None:
            headers = self._headers = dict(self._sent or ())
        return headers

    def outgoing_headers(self) -> dict[str, str] | None:
        """What the steps following this one in a workflow carry."""
        return self._sent if self._headers is None else (self._headers or None)

    def progress(self, current: float, total: float | None = None, **info: Any) -> Awaitable[None]:
        """Report progress: stored in the job's record (``job.info().progress``) and
        sent to every ``job.updates()`` watcher. A no-op when the task is called
        directly rather than run by a worker.

        In an async task, ``await ctx.progress(...)``. In a sync task (run in a
        worker thread) just call ``ctx.progress(...)``: it blocks until the
        report is stored, and what it returns is already done (awaiting it is
        harmless, forgetting to is too).
        """
        if self._report is None:
            return _DONE
        payload = encode(Progress(current=current, total=total, info=info, at_ms=now_ms()))
        loop = self._loop
        if loop is None or _running_loop() is loop:
            return self._report(self.job_id, payload)
        _wait(asyncio.run_coroutine_threadsafe(self._report(self.job_id, payload), loop), loop)
        return _DONE

    def __repr__(self) -> str:
        return (
            f"Context(job_id={self.job_id!r}, task_name={self.task_name!r}, "
            f"queue={self.queue!r}, attempt={self.attempt})"
        )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _wait(future: concurrent.futures.Future[None], loop: asyncio.AbstractEventLoop) -> None:
    """Wait for a report handed to the worker's loop; give up (the report is
    lost, as the job's thread is abandoned) only if that loop stopped."""
    while True:
        try:
            future.result(timeout=1.0)
            return
        except concurrent.futures.TimeoutError:
            if not loop.is_running():
                future.cancel()
                return


class _Done:
    """An awaitable that is already done: what ``progress()`` returns once a sync
    task's report is stored."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_DONE = _Done()
