"""Hooks: a worker's lifespan, middleware around each execution, and around each send.

Pure data and composition: the worker runs the lifespan hooks
(``_worker/lifespan.py``), the executor wraps each attempt in the middleware
(``_worker/executor.py``), the client wraps each send (``aioq/hooks.py``).
Every list is empty unless the user registers something, and each caller
checks that first: nothing is allocated or awaited on the hot path otherwise.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, TypeAlias

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from .context import Context

__all__ = ["Enqueue", "EnqueueMiddleware", "Hooks", "Middleware"]


class Enqueue:
    """One call about to be sent, as ``@app.before_enqueue`` hooks and enqueue
    middleware see it. A hook may change what it sends by assigning these
    attributes; raising refuses the send (the caller's ``kiq()`` raises it).

    Attributes:
        task: the task's name (read it; changing it is not supported).
        job_id: the id the job gets (a unique call may resolve to an existing job).
        args, kwargs: the call's arguments, before encoding.
        queue, priority: where the message goes (resolved: call > task > route > app).
        timeout, retries: the call's own overrides; ``None`` leaves them to the
            task and the app.
        headers: string → string, carried in the message (``ctx.headers`` on the
            worker) and on to retries and workflow follow-ups.
        delayed: True when the call has a ``delay`` or an ``eta``.
    """

    __slots__ = (
        "args",
        "delayed",
        "headers",
        "job_id",
        "kwargs",
        "priority",
        "queue",
        "retries",
        "task",
        "timeout",
    )

    def __init__(
        self,
        task: str,
        job_id: str,
        args: list[Any],
        kwargs: dict[str, Any],
        *,
        queue: str,
        priority: int,
        timeout: float | None = None,
        retries: int | None = None,
        headers: dict[str, str] | None = None,
        delayed: bool = False,
    ) -> None:
        self.task = task
        self.job_id = job_id
        self.args = args
        self.kwargs = kwargs
        self.queue = queue
        self.priority = priority
        self.timeout = timeout
        self.retries = retries
        self.headers: dict[str, str] = {} if headers is None else headers
        self.delayed = delayed

    def __repr__(self) -> str:
        return f"Enqueue(task={self.task!r}, job_id={self.job_id!r}, queue={self.queue!r})"

    def checked_headers(self) -> dict[str, str] | None:
        """The headers to send (None when empty); ``ConfigurationError`` unless
        every key and value is a ``str``."""
        headers = self.headers
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfigurationError(
                f"{self.task}: headers must be a dict of str to str, got {headers!r}"
            )
        return headers or None


Middleware: TypeAlias = "Callable[[Context, Callable[[], Awaitable[Any]]], Awaitable[Any]]"
"""``async def mw(ctx, call_next) -> result``: around every execution of a task."""

EnqueueMiddleware: TypeAlias = "Callable[[Enqueue, Callable[[], Awaitable[str]]], Awaitable[str]]"
"""``async def mw(call, call_next) -> job_id``: around every send of a client."""

StartHook: TypeAlias = (
    "Callable[[], Awaitable[Mapping[str, Any] | None] | Mapping[str, Any] | None]"
)
StopHook: TypeAlias = "Callable[..., Awaitable[None] | None]"


def _is_async(fn: object) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004  # an object with an async __call__
    )


def _accepts(fn: Callable[..., Any], n: int) -> bool:
    """Whether ``fn`` can be called with ``n`` positional arguments."""
    try:
        inspect.signature(fn).bind(*range(n))
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): let the call decide
        return True
    return True


class Hooks:
    """What an ``App`` registered: lifespan hooks, execution middleware, enqueue
    middleware (``before_enqueue`` hooks are turned into enqueue middleware)."""

    __slots__ = ("enqueue", "middleware", "starts", "stops")

    def __init__(self) -> None:
        self.starts: list[tuple[StartHook, bool]] = []
        """(hook, is async), in registration order."""
        self.stops: list[tuple[StopHook, bool, bool]] = []
        """(hook, is async, takes the state), in registration order."""
        self.middleware: tuple[Middleware, ...] = ()
        """Outermost first (the first registered)."""
        self.enqueue: tuple[EnqueueMiddleware, ...] = ()
        """Outermost first (the first registered)."""

    def add_start(self, fn: StartHook) -> None:
        _check_callable("on_worker_start", fn)
        if not _accepts(fn, 0):
            raise ConfigurationError(
                f"on_worker_start hook {fn!r} must take no arguments "
                "(it returns a mapping of what tasks find in ctx.state)"
            )
        self.starts.append((fn, _is_async(fn)))

    def add_stop(self, fn: StopHook) -> None:
        _check_callable("on_worker_stop", fn)
        takes_state = _accepts(fn, 1)
        if not takes_state and not _accepts(fn, 0):
            raise ConfigurationError(
                f"on_worker_stop hook {fn!r} must take no argument or one (the worker's state)"
            )
        self.stops.append((fn, _is_async(fn), takes_state))

    def add_middleware(self, fn: Middleware) -> None:
        _check_callable("middleware", fn)
        if not _is_async(fn):
            raise ConfigurationError(
                f"middleware {fn!r} must be an async function: async def mw(ctx, call_next)"
            )
        self.middleware = (*self.middleware, fn)

    def add_enqueue(self, fn: EnqueueMiddleware) -> None:
        _check_callable("enqueue middleware", fn)
        if not _is_async(fn):
            raise ConfigurationError(
                f"enqueue middleware {fn!r} must be an async function: "
                "async def mw(call, call_next)"
            )
        self.enqueue = (*self.enqueue, fn)

    def add_before_enqueue(self, fn: Callable[[Enqueue], Awaitable[None] | None]) -> None:
        _check_callable("before_enqueue", fn)
        if _is_async(fn):

            async def around(call: Enqueue, call_next: Callable[[], Awaitable[str]]) -> str:
                await fn(call)  # type: ignore[misc]
                return await call_next()

        else:

            async def around(call: Enqueue, call_next: Callable[[], Awaitable[str]]) -> str:
                fn(call)
                return await call_next()

        self.enqueue = (*self.enqueue, around)


def _check_callable(kind: str, fn: object) -> None:
    if not callable(fn):
        raise ConfigurationError(f"{kind} must be a function, got {fn!r}")


def merge_state(parts: list[tuple[object, object]]) -> dict[str, Any]:
    """What tasks see as ``ctx.state``: the mappings the start hooks returned,
    merged in registration order. ``parts``: (hook, what it returned)."""
    state: dict[str, Any] = {}
    for hook, value in parts:
        if value is None:
            continue
        if not hasattr(value, "keys") or not hasattr(value, "__getitem__"):
            raise ConfigurationError(
                f"on_worker_start hook {hook!r} returned {type(value).__name__}; "
                "return a mapping (its keys become ctx.state's) or None"
            )
        for key in value.keys():
            if key in state:
                raise ConfigurationError(
                    f"on_worker_start hooks both set ctx.state[{key!r}] (the second: {hook!r})"
                )
            state[key] = value[key]
    return state


async def run_middleware(
    middleware: tuple[Middleware, ...], ctx: Context, invoke: Callable[[], Awaitable[Any]]
) -> Any:
    """Call ``invoke`` (the task) through every middleware, the first registered outermost."""
    call = invoke
    for mw in reversed(middleware):
        call = functools.partial(mw, ctx, call)
    return await call()


async def run_enqueue(
    wrappers: tuple[EnqueueMiddleware, ...], call: Enqueue, send: Callable[[], Awaitable[str]]
) -> str:
    """Send ``call`` through every enqueue middleware, the first registered outermost."""
    step = send
    for mw in reversed(wrappers):
        step = functools.partial(mw, call, step)
    return await step()
