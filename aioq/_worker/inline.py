"""Inline mode for unit tests: ``kiq()`` runs the task at once, in this process,
with no Redis (``App.inline()`` / ``aioq.testing.inline(app)``).

The app's broker is swapped for ``InlineBroker`` for the ``with`` block. A
call still goes through ``new_message`` (argument encoding, size cap), the task's
argument conversion, ``run_attempt`` (timeout, threads for sync tasks, result
encoding) and the worker's retry rule; its outcome is kept in memory for
``Job.result/state/info``. The app's middleware and enqueue hooks run as they
would (its lifespan hooks do not: ``ctx.state`` is empty). Limits (docs/testing.md):
retries run at once (no backoff), ``delay``/``eta`` are ignored, workflows
(chain/group/chord), rate limits, ``max_running``, abort and the sync callers
(``delay()``) are not supported inline.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
import msgspec

from .._core.context import Context
from .._core.message import JobState, Message, decode_message, encode, now_ms
from .._transport.broker import RedisBroker
from .._transport.keys import Keyspace
from ..errors import ConfigurationError
from .dispatch import _call_options
from .executor import run_attempt
from .failures import Failures

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .._core.options import When
    from .._core.registry import TaskDef
    from .._transport.types import NewJob
    from .host import WorkerHost

WORKER_ID = "inline"


class InlineBroker(RedisBroker):
    """Stands in for the app's broker: every enqueue runs the job to its end, in
    memory (what it does not override would still go to Redis)."""

    def __init__(self, app: WorkerHost) -> None:
        super().__init__(app.url, Keyspace(app.prefix), {}, 1.0)
        self.app = app
        self.records: dict[str, dict[bytes, bytes]] = {}
        self._threads = anyio.CapacityLimiter(4)

    async def enqueue(self, job: NewJob) -> None:
        await self._run(job)

    async def enqueue_delayed(self, job: NewJob, when: When) -> None:
        await self._run(job)  # no waiting inline: due at once

    async def enqueue_unique(self, job: NewJob, when: When | None, hold_ms: int) -> str:
        await self._run(job)
        return job.job_id

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> None:
        for job in jobs:
            await self._run(job)

    async def wait_outcome(self, job_id: str, timeout: float | None) -> bytes:
        outcome = self.records.get(job_id, {}).get(b"outcome")
        if outcome is None:
            raise TimeoutError(f"job {job_id} was not sent inline")
        return outcome

    async def job_state(self, job_id: str) -> bytes | None:
        return self.records.get(job_id, {}).get(b"state")

    async def job_record(self, job_id: str) -> dict[bytes, bytes]:
        return dict(self.records.get(job_id, {}))

    async def report_progress(self, job_id: str, payload: bytes) -> None:
        self.records.setdefault(job_id, {})[b"progress"] = payload

    async def aclose(self) -> None:
        return None

    async def _run(self, job: NewJob) -> None:
        if job.payload is None:  # a workflow step sent later
            raise ConfigurationError("workflows (chain, group, chord) do not run inline")
        msg = decode_message(job.payload)
        task = self.app.registry.get(msg.task)
        if task is None:
            raise ConfigurationError(f"task {msg.task!r} is not registered in this app")
        if msg.cont is not None:
            raise ConfigurationError("workflows (chain, group, chord) do not run inline")
        record = self.records[msg.id] = {
            b"task": msg.task.encode(),
            b"queue": msg.queue.encode(),
            b"enqueued_ms": str(msg.enqueued_ms).encode(),
        }
        await self._attempts(task, msg, record)

    async def _attempts(self, task: TaskDef, msg: Message, record: dict[bytes, bytes]) -> None:
        """Run attempts as a worker would, retries at once; ``ArgumentError`` is
        raised to the caller (a worker dead-letters such a message)."""
        opts = self.app.options_for(task.name, _call_options(msg))
        attempt = 1
        while True:
            record[b"state"] = JobState.RUNNING.value.encode()
            record[b"attempts"] = str(attempt).encode()
            record[b"started_ms"] = str(now_ms()).encode()
            mw = self.app.hooks.middleware
            ctx = self._context(msg, attempt) if task.wants_context or mw else None
            outcome, error = await run_attempt(
                task, msg, ctx, opts, self._threads, self.app.sync_task_wrapper, mw
            )
            if error is not None and Failures._retryable(task, msg, opts, error):
                msg = msgspec.structs.replace(msg, retry=msg.retry + 1)
                attempt += 1
                continue
            record[b"state"] = outcome.state.encode()
            record[b"outcome"] = encode(outcome)
            record[b"worker"] = WORKER_ID.encode()
            return

    def _context(self, msg: Message, attempt: int) -> Context:
        return Context(
            app=self.app,
            job_id=msg.id,
            task_name=msg.task,
            queue=msg.queue,
            attempt=attempt,
            worker_id=WORKER_ID,
            report=self.report_progress,
            headers=msg.headers,
        )


@contextlib.contextmanager
def inline(app: WorkerHost) -> Iterator[InlineBroker]:
    """Run ``app``'s ``kiq()`` calls in-process for the ``with`` block (no Redis)."""
    saved = app.broker
    broker = InlineBroker(app)
    app.broker = broker
    try:
        yield broker
    finally:
        app.broker = saved
