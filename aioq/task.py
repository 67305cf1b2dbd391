"""Tasks: functions registered on an ``App`` that can run on workers.

``@app.task`` turns a function into a ``Task``. ``task.kiq(...)`` enqueues a
call and returns a ``Job``; calling the task directly still just runs the
function here. ``kiq`` is typed with the function's own parameters, so a
type checker rejects ``add.kiq("a", 2)`` for ``add(x: int, y: int)``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import msgspec

from ._core.canvas import SigData
from ._core.context import Context
from ._core.message import new_message, now_ms, validate_job_id
from ._core.options import TaskOptions, When, make_when, validate, wire
from ._core.partitions import check_key
from ._transport.types import NewJob
from .canvas import Signature
from .errors import ConfigurationError
from .job import Job
from .sync import SyncJob, call

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
    from datetime import datetime
    from typing import Self

    from ._core.host import TaskHost
    from ._core.options import Effective
    from ._core.registry import TaskDef

__all__ = ["AsyncTask", "SyncTask", "Task", "TaskDecorator"]

P = ParamSpec("P")
R = TypeVar("R")

_UNSET: Any = msgspec.UNSET


class Task(Generic[P, R]):
    """A registered task. ``Task[[int, int], int]`` takes two ints and returns an int."""

    __slots__ = ("_call", "_job_id", "_key", "_resolved", "_when", "app", "definition")

    def __init__(
        self,
        app: TaskHost,
        definition: TaskDef,
        call: TaskOptions | None = None,
        when: When | None = None,
        job_id: str | None = None,
        key: str | int | None = None,
    ) -> None:
        self.app = app
        self.definition = definition
        self._call = call or TaskOptions()
        self._when = when
        self._job_id = job_id
        self._key = key
        self._resolved: tuple[int, Effective] | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    def _options(self) -> Effective:
        """The options of a call, resolved call > task > routing rules > app
        (``App.options_for``). Cached until the app's routing rules change."""
        version = self.app._routes_version
        resolved = self._resolved
        if resolved is None or resolved[0] != version:
            resolved = self._resolved = (version, self.app.options_for(self.name, self._call))
        return resolved[1]

    def _placement(self) -> tuple[str, int]:
        """(queue, priority) of a call."""
        opts = self._options()
        return opts.queue, opts.priority

    @property
    def queue(self) -> str:
        """The queue a ``kiq()`` of this task goes to."""
        return self._placement()[0]

    @property
    def priority(self) -> int:
        """The priority (0-9, 9 most urgent) a ``kiq()`` of this task gets."""
        return self._placement()[1]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} queue={self.queue!r}>"

    def with_options(
        self,
        *,
        queue: str = _UNSET,
        timeout: float | None = _UNSET,
        result_ttl: float = _UNSET,
        store_result: bool = _UNSET,
        retries: int = _UNSET,
        priority: int = _UNSET,
        delay: float | None = None,
        eta: datetime | None = None,
        job_id: str | None = None,
        unique_for: float | None = _UNSET,
        partition_key: str | int | None = None,
    ) -> Self:
        """A copy of this task whose calls use these options (call > task > app).

        ``delay`` (seconds) or ``eta`` (an aware datetime) make each call wait in
        the queue's delayed set, state ``scheduled``, until it is due.
        ``priority`` is 0-9 (9 most urgent). ``job_id`` names the job: while a
        job of that id is pending, running, or its result kept, ``kiq()``
        returns that job instead of sending another. ``unique_for`` does the
        same for calls with equal arguments, while one is pending or running
        (at most that many seconds); ``None`` turns a task's ``unique_for`` off.
        ``partition_key`` (a str or an int) picks the partition of a partitioned
        queue (``App.queue``): calls with equal keys go to the same partition.
        """
        over = validate(
            TaskOptions(
                queue=queue,
                timeout=timeout,
                result_ttl=result_ttl,
                store_result=store_result,
                retries=retries,
                priority=priority,
                unique_for=unique_for,
            )
        )
        # checked now, not at the first kiq()
        when = make_when(delay, eta) if delay is not None or eta is not None else self._when
        if job_id is not None:
            validate_job_id(job_id)
        if partition_key is not None:
            check_key(partition_key)
        return type(self)(
            self.app,
            self.definition,
            self._call.merged(over),
            when,
            job_id if job_id is not None else self._job_id,
            partition_key if partition_key is not None else self._key,
        )

    async def kiq(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue a call; returns once the message is in Redis.

        Raises:
            MessageTooLarge: the encoded call is over ``max_message_bytes``.
            BrokerUnavailable: Redis cannot be reached.
            ArgumentError: an argument missing or unexpected, or one msgpack
                cannot carry, named (also a ``TypeError``).
        """
        return await self._kiq(args, kwargs)

    async def _kiq(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Job[R]:
        # send() by name is not checked here: it may address another version of the task
        self.definition.check_call(args, kwargs)
        job_id = await self.app._submit(
            self.definition.name,
            args,
            kwargs,
            self._call,
            self._when,
            self._job_id,
            self._options(),
            partition_key=self._key,
        )
        return Job(self.app, job_id, self.definition.return_type)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> SyncJob[R]:
        """``kiq()`` for sync code (Celery's ``delay``): enqueue a call from a
        Django or Flask view, a script or any thread, and return a ``SyncJob``
        (``.get(timeout=)``, ``.state()``, …) once the message is in Redis.

        Runs on the process's one background event loop (``aioq.sync``), shared
        by every thread. Inside a running event loop it raises
        ``SyncCallInEventLoop``: use ``await task.kiq(...)`` there.
        """
        return SyncJob(call(self.app.broker, lambda: self._kiq(args, kwargs), self._hint()))

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        priority: int | None = None,
        job_id: str | None = None,
    ) -> SyncJob[R]:
        """Celery's ``apply_async``: ``delay()`` with the arguments as a list and a
        dict, and options for this call: ``countdown`` (seconds, aioq's
        ``delay``), ``eta`` (an aware datetime), ``queue``, ``priority`` (0-9,
        **9 most urgent** — the opposite of Celery on Redis), ``job_id``."""
        task = self.with_options(
            queue=_UNSET if queue is None else queue,
            priority=_UNSET if priority is None else priority,
            delay=countdown,
            eta=eta,
            job_id=job_id,
        )
        call_args, call_kwargs = list(args or ()), dict(kwargs or {})
        return SyncJob(
            call(self.app.broker, lambda: task._kiq(call_args, call_kwargs), self._hint())
        )

    def _hint(self) -> str:
        short = getattr(self.definition.fn, "__name__", None) or self.name
        return f"`await {short}.kiq(...)`"

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A signature of this task called with these arguments, for workflows
        (``chain``, ``group``, ``chord``). In a chain, the previous step's result
        is passed before ``args``."""
        queue, priority = self._placement()
        options = {k: v for k, v in wire(self._call).items() if v is not None}
        if priority:
            options["priority"] = priority
        data = SigData(self.definition.name, list(args), kwargs, queue, options)
        return Signature(self.app, data, self.definition.return_type)

    async def kiq_many(self, calls: Iterable[tuple[Any, ...]]) -> list[Job[R]]:
        """Enqueue one call per tuple of positional arguments, in pipelined batches.

        ``await add.kiq_many([(1, 2), (3, 4)])`` costs a round trip per
        thousand messages instead of one per message.
        """
        if self._job_id is not None:
            raise ConfigurationError("kiq_many cannot give every call the same job_id")
        name, call, opts = self.definition.name, self._call, self._options()
        if self._when is not None or opts.unique_for is not None or self.app.hooks.enqueue:
            # each gets a lock, a schedule or hooks: one send per call, auto-batched
            ids = await asyncio.gather(
                *(
                    self.app._submit(
                        name, args, {}, call, self._when, None, opts, partition_key=self._key
                    )
                    for args in calls
                )
            )
        else:
            limit = self.app.max_message_bytes
            level = opts.priority
            partitions = self.app.partitions
            wired = wire(call) | {"priority": level}
            enqueued = now_ms()
            ttl_ms = int(opts.result_ttl * 1000)
            jobs = []
            names = self.definition.positional_names
            for args in calls:
                self.definition.check_call(args, {})
                queue = partitions.pick(opts.queue, self._key)  # each call: its partition
                job_id, payload = new_message(
                    name,
                    queue,
                    args,
                    {},
                    **wired,
                    max_bytes=limit,
                    signer=self.app.signer,
                    enqueued_ms=enqueued,
                    names=names,
                )
                jobs.append(NewJob(job_id, name, queue, level, payload, enqueued, ttl_ms))
            await self.app.broker.enqueue_many(jobs)
            ids = [job.job_id for job in jobs]
        rtype = self.definition.return_type
        return [Job(self.app, job_id, rtype) for job_id in ids]

    def _local_context(self) -> Context:
        return Context(
            app=self.app,
            job_id="local",
            task_name=self.name,
            queue=self.queue,
            attempt=1,
            worker_id="local",
        )


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` with options returns."""

    @overload
    def __call__(  # type: ignore[overload-overlap]  # coroutine functions match first
        self, fn: Callable[Concatenate[Context, P], Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...
    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[Concatenate[Context, P], R], /) -> SyncTask[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> SyncTask[P, R]: ...


class AsyncTask(Task[P, R]):
    """A task whose function is a coroutine function."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """Run the function here, now (no queue involved)."""
        ctx = self._local_context() if self.definition.wants_context else None
        coro: Coroutine[Any, Any, R] = self.definition.call(ctx, list(args), kwargs)
        return coro


class SyncTask(Task[P, R]):
    """A task whose function is a plain function; workers run it in a thread."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here, now (no queue involved)."""
        ctx = self._local_context() if self.definition.wants_context else None
        value: R = self.definition.call(ctx, list(args), kwargs)
        return value
