"""The per-attempt context a task can ask for by annotating a parameter ``aioq.Context``."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

from .message import Progress, encode, now_ms

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..app import App


class Running(NamedTuple):
    """The job an executor runs, for log lines logged inside it (``--log-format json``)."""

    job_id: str
    task: str
    queue: str
    attempt: int


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
    """

    __slots__ = ("_report", "app", "attempt", "job_id", "queue", "task_name", "worker_id")

    def __init__(
        self,
        *,
        app: App,
        job_id: str,
        task_name: str,
        queue: str,
        attempt: int,
        worker_id: str,
        report: Callable[[str, bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.job_id = job_id
        self.task_name = task_name
        self.queue = queue
        self.attempt = attempt
        self.worker_id = worker_id
        self._report = report

    async def progress(self, current: float, total: float | None = None, **info: Any) -> None:
        """Report progress: stored in the job's record (``job.info().progress``) and
        sent to every ``job.updates()`` watcher. A no-op when the task is called
        directly rather than run by a worker."""
        if self._report is not None:
            report = Progress(current=current, total=total, info=info, at_ms=now_ms())
            await self._report(self.job_id, encode(report))

    def __repr__(self) -> str:
        return (
            f"Context(job_id={self.job_id!r}, task_name={self.task_name!r}, "
            f"queue={self.queue!r}, attempt={self.attempt})"
        )
