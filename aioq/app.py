"""The ``App``: configuration, the task registry, and the client side of the queue."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, overload

import msgspec

from ._core.options import (
    NOT_SET,
    Effective,
    TaskOptions,
    check_app,
    check_definition,
    parse_rate,
    resolve,
    validate,
)
from ._core.registry import Registry, TaskDef
from ._core.schedule import Schedule
from ._core.settings import Settings
from ._core.signing import Signer
from ._transport.broker import Broker, RedisBroker
from ._transport.connection import cluster_url
from ._transport.keys import Keyspace
from .deadletter import DeadLetters
from .errors import ConfigurationError
from .events import Events
from .hooks import Hooking
from .routing import Routing
from .scheduling import Scheduling
from .sending import Sending
from .status import Operations
from .sync import SyncCalls
from .task import AsyncTask, SyncTask, Task, TaskDecorator
from .wrapping import SyncWrapping

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from contextlib import AbstractContextManager
    from types import TracebackType

    from ._core.context import Context

__all__ = ["App"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_URL = "redis://localhost:6379/0"
_UNSET: Any = msgspec.UNSET


class App(
    Routing,
    Scheduling,
    DeadLetters,
    Operations,
    SyncCalls,
    SyncWrapping,
    Hooking,
    Sending,
    Events,
):
    """An aioq application: where tasks are registered and from which they are sent.

    Creating an ``App`` does no I/O; the connection pool opens on first use.
    Use ``async with app:`` (or ``await app.aclose()``) to close it.

    Args:
        url: Redis URL (``redis://``, ``rediss://``, ``unix://``; a Redis Cluster:
            ``redis+cluster://host:port[,host:port…]``, ``rediss+cluster://…``;
            through Redis Sentinel: ``redis+sentinel://host:port[,host:port…]/service[/db]``
            or ``rediss+sentinel://…``; docs/scaling.md).
            Default: ``$AIOQ_REDIS_URL``, else ``redis://localhost:6379/0``.
        prefix: prefix of every Redis key aioq writes.
        default_queue: queue of tasks and calls that name none.
        result_ttl: seconds a finished job's record (and result) is kept.
        visibility_timeout: the lease, in seconds: messages of a worker that stopped
            renewing it (it died, or stalled) are taken over by another worker
            0.7-0.8 times this long later (plus up to 0.25 s); a live worker's
            messages never are.
        max_message_bytes: largest encoded call ``kiq()`` accepts.
        max_result_bytes: largest encoded result a task may store (default: no cap);
            over it the job fails with ``ResultTooLarge``. Tasks may set their own.
        signing_keys: sign every message with HMAC-SHA256 (the first key signs, all
            verify); a worker then dead-letters unsigned or forged messages with
            reason ``bad signature`` (docs/security.md).
        dead_letter_maxlen: approximate cap on each dead-letter stream.
        events_maxlen: lifecycle events (``App.events()``, ``aioq events``): the
            approximate cap on each queue's event stream; 0 (default) keeps them
            off (they cost ~13% of a no-op task's throughput: docs/operations.md).
        retries: default for every task (see ``App.task``).
        retry_backoff: default for every task (see ``App.task``).
        retry_backoff_max: default for every task (see ``App.task``).
        max_deliveries: default for every task (see ``App.task``).
        operation_timeout: seconds a client call (``kiq``, ``state``, …) waits for
            Redis before raising ``BrokerUnavailable`` (``result(timeout=…)``
            has its own deadline).
        include: modules of tasks a worker imports at start (Celery's ``include``).
        cluster: ``url`` names one node of a Redis Cluster (same as a
            ``redis+cluster://host:port[,host:port…]`` URL; docs/scaling.md).
        **redis_options: passed to ``redis.asyncio.Redis.from_url``;
            ``sentinel_options={…}``: connection arguments for the sentinels alone.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        prefix: str = "aioq",
        default_queue: str = "default",
        result_ttl: float = 86400.0,
        visibility_timeout: float = 60.0,
        max_message_bytes: int = 1 << 20,
        max_result_bytes: int | None = None,
        signing_keys: Sequence[str | bytes] = (),
        dead_letter_maxlen: int = 100_000,
        events_maxlen: int = 0,
        retries: int = 0,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 600.0,
        max_deliveries: int = 5,
        operation_timeout: float = 15.0,
        include: Sequence[str] = (),
        cluster: bool = False,
        **redis_options: Any,
    ) -> None:
        self.url = url or os.environ.get("AIOQ_REDIS_URL") or DEFAULT_URL
        if cluster:
            self.url = cluster_url(self.url)
        check_app(
            prefix,
            visibility_timeout,
            operation_timeout,
            max_message_bytes,
            dead_letter_maxlen,
            events_maxlen,
        )
        validate(
            TaskOptions(
                max_result_bytes=max_result_bytes,
                queue=default_queue,
                result_ttl=result_ttl,
                retries=retries,
                retry_backoff=retry_backoff,
                retry_backoff_max=retry_backoff_max,
                max_deliveries=max_deliveries,
            )
        )
        if isinstance(include, str) or not all(isinstance(m, str) for m in include):
            raise ConfigurationError(f"include must be a list of module names, got {include!r}")
        self.include = list(include)
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.max_deliveries = max_deliveries
        self.prefix = prefix
        self.default_queue = default_queue
        self.result_ttl = result_ttl
        self.visibility_timeout = visibility_timeout
        self.max_message_bytes = max_message_bytes
        self.max_result_bytes = max_result_bytes
        self.signer = Signer(signing_keys) if signing_keys else None
        """Signs and verifies messages (``signing_keys``); None: messages are unsigned."""
        self.dead_letter_maxlen = dead_letter_maxlen
        self.events_maxlen = events_maxlen
        self.registry = Registry()
        self.keys = Keyspace(prefix)
        self.redis_options = redis_options
        self.operation_timeout = operation_timeout
        self.broker: Broker = RedisBroker(self.url, self.keys, redis_options, operation_timeout)
        """The seam to Redis (``_transport/broker.py``): everything aioq does there."""
        Routing.__init__(self)
        Scheduling.__init__(self)
        Hooking.__init__(self)

    @property
    def settings(self) -> Settings:
        """A snapshot of the settings workers and schedulers read."""
        return Settings(
            url=self.url,
            prefix=self.prefix,
            default_queue=self.default_queue,
            result_ttl=self.result_ttl,
            visibility_timeout=self.visibility_timeout,
            max_message_bytes=self.max_message_bytes,
            dead_letter_maxlen=self.dead_letter_maxlen,
            events_maxlen=self.events_maxlen,
            operation_timeout=self.operation_timeout,
            include=tuple(self.include),
        )

    def __repr__(self) -> str:
        return f"<App prefix={self.prefix!r} tasks={len(self.registry)}>"

    # -- registration -------------------------------------------------------

    @overload
    def task(  # type: ignore[overload-overlap]  # coroutine functions match first
        self, fn: Callable[Concatenate[Context, P], Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...
    @overload
    def task(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncTask[P, R]: ...
    @overload
    def task(self, fn: Callable[Concatenate[Context, P], R], /) -> SyncTask[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> SyncTask[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = ...,
        timeout: float | None = ...,
        result_ttl: float = ...,
        store_result: bool = ...,
        retries: int = ...,
        retry_backoff: float = ...,
        retry_backoff_max: float = ...,
        retry_on: tuple[type[BaseException], ...] = ...,
        max_deliveries: int = ...,
        priority: int = ...,
        rate_limit: str | None = ...,
        max_running: int | None = ...,
        unique_for: float | None = ...,
        max_result_bytes: int | None = ...,
        cron: str | None = ...,
        tz: str = ...,
        catch_up: bool = ...,
    ) -> TaskDecorator: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = _UNSET,
        timeout: float | None = _UNSET,
        result_ttl: float = _UNSET,
        store_result: bool = _UNSET,
        retries: int = _UNSET,
        retry_backoff: float = _UNSET,
        retry_backoff_max: float = _UNSET,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        max_deliveries: int = _UNSET,
        priority: int = _UNSET,
        rate_limit: str | None = None,
        max_running: int | None = None,
        unique_for: float | None = _UNSET,
        max_result_bytes: int | None = _UNSET,
        cron: str | None = None,
        tz: str = "UTC",
        catch_up: bool = False,
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(name=…, queue=…)``.

        The name defaults to ``f"{fn.__module__}.{fn.__qualname__}"``. A plain
        (sync) function runs in a worker thread; a coroutine function on the
        worker's event loop.

        ``retries`` more attempts follow a failure whose exception is an instance
        of ``retry_on`` (default: any exception), after an exponential backoff
        with full jitter: up to ``retry_backoff * 2**(n-1)`` seconds before retry
        n, never more than ``retry_backoff_max``. A message delivered more than
        ``max_deliveries`` times (it keeps killing its worker) is dead-lettered.

        ``priority`` (0-9, 9 most urgent) orders its jobs within their queue.
        ``rate_limit="100/s"`` (or ``/m``, ``/h``, ``/d``) spaces its starts
        evenly across every worker; ``max_running=5`` caps how many run at once
        across every worker. ``unique_for=60`` makes a call with the same
        arguments, while one is queued or running (at most that many
        seconds), return that job instead of sending another.
        ``max_result_bytes`` caps its encoded result (else the app's cap): a
        larger result fails the job with ``ResultTooLarge`` and is not stored.

        ``cron="*/5 * * * *"`` (with ``tz="Asia/Seoul"``; UTC by default) also
        sends it on that schedule, with no arguments, whenever a scheduler runs
        (``aioq scheduler`` or ``aioq worker --scheduler``); ``catch_up=True``
        sends one missed run after a time without any scheduler.
        """
        options = validate(
            TaskOptions(
                queue=queue,
                timeout=timeout,
                result_ttl=result_ttl,
                store_result=store_result,
                retries=retries,
                retry_backoff=retry_backoff,
                retry_backoff_max=retry_backoff_max,
                max_deliveries=max_deliveries,
                priority=priority,
                unique_for=unique_for,
                max_result_bytes=max_result_bytes,
            )
        )
        check_definition(name, retry_on, rate_limit, catch_up, cron, tz)
        limit = parse_rate(rate_limit) if rate_limit is not None else None

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            definition = TaskDef(
                f,
                name or f"{f.__module__}.{f.__qualname__}",
                options,
                retry_on=retry_on,
                rate_limit=limit,
                max_running=max_running,
            )
            if cron is not None:  # checked before registering: a bad spec registers nothing
                when = Schedule(
                    name=definition.name, task=definition.name, cron=cron, tz=tz, catch_up=catch_up
                )
            self.registry.add(definition)
            if cron is not None:
                self._add_schedule(when)
            cls = AsyncTask if definition.is_async else SyncTask
            return cls(self, definition)

        return register if fn is None else register(fn)

    # -- routing ------------------------------------------------------------

    def options_for(self, task: str, call: TaskOptions = NOT_SET) -> Effective:
        """Every option of a call of ``task``, resolved call > task > routing rule >
        app default: senders, workers and schedulers all ask here (a task not
        registered in this process has no options of its own)."""
        local = self.registry.get(task)
        own = local.options if local is not None else NOT_SET
        return resolve(self.defaults(), own, call, self.route(task))

    def placement(self, task: str, call: TaskOptions | None = None) -> tuple[str, int]:
        """Where a call of ``task`` goes: (queue, priority), resolved call > task >
        routing rules > app default."""
        opts = self.options_for(task, call or NOT_SET)
        return opts.queue, opts.priority

    @property
    def task_names(self) -> list[str]:
        return self.registry.names()

    def queues(self) -> list[str]:
        """The queues a worker of this app consumes by default: the default queue,
        every queue a registered task names or is routed to, every queue a
        routing rule or schedule names, and every queue declared with ``queue()``
        (logical names: a worker expands a partitioned one into its partitions)."""
        found = {self.default_queue, *self.registry.queues()}
        found.update(self.placement(name)[0] for name in self.registry.names())
        found.update(t.queue for _, t in self._routes if isinstance(t.queue, str))
        found.update(s.queue for s in self.schedules.values() if s.queue is not None)
        found.update(self.partitions.declared())
        return sorted(found)

    def defaults(self) -> Effective:
        return Effective(
            queue=self.default_queue,
            timeout=None,
            result_ttl=self.result_ttl,
            store_result=True,
            retries=self.retries,
            retry_backoff=self.retry_backoff,
            retry_backoff_max=self.retry_backoff_max,
            max_deliveries=self.max_deliveries,
            max_result_bytes=self.max_result_bytes,
        )

    # -- lifecycle ----------------------------------------------------------

    async def ping(self) -> None:
        """Check that Redis answers; raises ``BrokerUnavailable`` if not."""
        await self.broker.ping()

    def inline(self) -> AbstractContextManager[object]:
        """``with app.inline():`` ``kiq()`` runs each task at once in this process,
        through the same argument conversion and result encoding, without Redis
        (for unit tests; limits in docs/testing.md)."""
        from ._worker.inline import inline

        return inline(self)

    async def aclose(self) -> None:
        """Close this process's connections of the app (safe to call twice)."""
        await self.broker.aclose()

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
