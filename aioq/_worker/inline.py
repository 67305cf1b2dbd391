"""Inline mode for unit tests: ``kiq()`` runs the task at once, in this process,
with no Redis (``App.inline()`` / ``aioq.testing.inline(app)``).

The app's broker is swapped for ``InlineBroker`` for the ``with`` block. A
call still goes through ``new_message`` (argument encoding, size cap), the task's
argument conversion, ``run_attempt`` (timeout, threads for sync tasks, result
encoding) and the worker's retry rule; its outcome is kept in memory for
``Job.result/state/info``. The app's middleware and enqueue hooks run as they
would (its lifespan hooks do not: ``ctx.state`` is empty). Limits (docs/testing.md):
retries run at once (no backoff), ``delay``/``eta`` are ignored; workflows run
step by step (members of a group one after another), carried on by the same
rules as on a worker (``_core/canvas``, ``flow.ended_outcome``); rate limits,
``max_running``, abort and the sync callers (``delay()``) are not supported inline.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .._core.canvas import Launch, barriers, complete, downstream
from .._core.context import Context
from .._core.message import (
    ErrorInfo,
    JobState,
    Message,
    decode_message,
    decode_outcome,
    decode_value,
    encode,
    launch_message,
    now_ms,
)
from .._transport.broker import RedisBroker
from .._transport.keys import Keyspace
from ..errors import ConfigurationError
from .dispatch import _call_options
from .executor import run_attempt
from .failures import Failures
from .flow import FOLLOW_UP_MAX_BYTES, ended_outcome, on_error_launch

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
        self._barriers: dict[str, dict[int, object]] = {}
        """Group results reported so far, by barrier (closed ones are removed)."""
        self._closed: set[str] = set()

    async def enqueue(self, job: NewJob) -> None:
        await self._run(job)

    async def enqueue_delayed(self, job: NewJob, when: When) -> None:
        await self._run(job)  # no waiting inline: due at once

    async def enqueue_unique(self, job: NewJob, when: When | None, hold_ms: int) -> str:
        await self._run(job)
        return job.job_id

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> None:
        for job in jobs:  # a workflow's later steps: queued until sent
            if job.payload is None:
                self.records[job.job_id] = self._new_record(job.job_id, job.task, job.queue, None)
        for job in jobs:
            if job.payload is not None:
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
        assert job.payload is not None
        await self._run_message(decode_message(job.payload))

    async def _run_message(self, msg: Message) -> None:
        task = self.app.registry.get(msg.task)
        if task is None:
            raise ConfigurationError(f"task {msg.task!r} is not registered in this app")
        record = self.records[msg.id] = self._new_record(
            msg.id, msg.task, msg.queue, msg.enqueued_ms
        )
        await self._attempts(task, msg, record)
        if msg.cont is not None:
            await self._carry_on(msg, decode_outcome(record[b"outcome"]))

    @staticmethod
    def _new_record(job_id: str, task: str, queue: str, enqueued: int | None) -> dict[bytes, bytes]:
        record = {b"task": task.encode(), b"queue": queue.encode(), b"state": b"queued"}
        if enqueued is not None:
            record[b"enqueued_ms"] = str(enqueued).encode()
        return record

    async def _carry_on(self, msg: Message, outcome: Any) -> None:
        """What a worker's ``Flow`` does after a workflow step, in memory."""
        assert msg.cont is not None
        if outcome.state != JobState.SUCCEEDED.value:
            state = JobState(outcome.state)
            error = outcome.error or ErrorInfo("Error", f"job ended {outcome.state}")
            payload = ended_outcome(msg, state, error, now_ms())
            self._closed.update(barriers(msg.cont))
            for job_id in downstream(msg.cont):
                self.records.setdefault(job_id, {}).update(
                    {b"state": state.value.encode(), b"outcome": payload}
                )
            handler = on_error_launch(msg, error) if state == JobState.FAILED else None
            if handler is not None:
                await self._launch(handler, msg.headers)
            return
        pending = complete(decode_value(outcome.result), msg.cont)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Launch):
                await self._launch(action, msg.headers)
                continue
            join = action.join
            if join.barrier in self._closed:
                continue
            got = self._barriers.setdefault(join.barrier, {})
            got[join.index] = action.value
            if len(got) == join.size:
                del self._barriers[join.barrier]
                pending.extend(complete([got[i] for i in range(join.size)], join.outer))

    async def _launch(self, action: Launch, headers: dict[str, str] | None) -> None:
        payload = launch_message(action, FOLLOW_UP_MAX_BYTES, headers)
        await self._run_message(decode_message(payload))

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
