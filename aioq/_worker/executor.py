"""Running one attempt of a task: argument conversion, timeout, threads, outcome.

Nothing here speaks Redis: an attempt turns a decoded message into an
``Outcome``; the worker decides what to write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .._core.hooks import run_middleware
from .._core.message import ErrorInfo, JobState, Message, Outcome, encode, now_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._core.context import Context
    from .._core.hooks import Middleware
    from .._core.options import Effective
    from .._core.registry import TaskDef

log = logging.getLogger("aioq.worker")
_SUCCEEDED = JobState.SUCCEEDED.value  # an enum member's .value is two calls per task


def error_outcome(type_name: str, message: str, tb: str = "") -> Outcome:
    return Outcome(JobState.FAILED.value, now_ms(), error=ErrorInfo(type_name, message, tb))


def describe(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when the exception cannot even say that."""
    try:
        return str(exc)
    except Exception as inner:
        return f"<unprintable {type(exc).__name__}: str() raised {type(inner).__name__}>"


def _exception_outcome(exc: BaseException) -> Outcome:
    try:
        tb = "".join(traceback.format_exception(exc))
    except Exception:  # a broken __str__ breaks the formatting too
        tb = "".join(traceback.format_tb(exc.__traceback__))
    return error_outcome(type(exc).__name__, describe(exc), tb)


async def run_attempt(
    task: TaskDef,
    msg: Message,
    ctx: Context | None,
    opts: Effective,
    threads: anyio.CapacityLimiter,
    wrap: Callable[[Callable[[], Any]], Any] | None = None,
    middleware: tuple[Middleware, ...] = (),
) -> tuple[Outcome, BaseException | None]:
    """Run the task once and describe how it ended (with the exception, if any).

    ``middleware`` (the app's, outermost first; ``ctx`` is then never None) wraps
    the call, inside the timeout: what the outermost returns is the result, what
    it raises fails the attempt like the task's own exception.

    ``ArgumentError`` (arguments that do not fit the signature) propagates:
    the caller dead-letters such a message instead of just failing it.
    Cancellation from outside (shutdown, lost lease) propagates too.
    ``wrap``: the app's ``sync_task_wrapper``, run around a sync task in its thread.
    """
    args, kwargs = task.bind(msg.args, msg.kwargs)
    timeout = asyncio.timeout(opts.timeout) if opts.timeout is not None else None
    try:
        if middleware:
            assert ctx is not None
            call = run_middleware(
                middleware, ctx, lambda: _invoke(task, ctx, args, kwargs, threads, wrap)
            )
        else:
            call = _invoke(task, ctx, args, kwargs, threads, wrap)
        if timeout is None:
            value = await call
        else:
            async with timeout:
                value = await call
    except TimeoutError as exc:
        if timeout is not None and timeout.expired():
            message = f"task {task.name} timed out after {opts.timeout:g}s"
            return error_outcome("TimeoutError", message), TimeoutError(message)
        return _exception_outcome(exc), exc
    except Exception as exc:
        return _exception_outcome(exc), exc
    if not opts.store_result:
        return Outcome(_SUCCEEDED, now_ms()), None
    try:
        raw = msgspec.Raw(encode(value))
    except Exception as exc:  # TypeError, OverflowError (2**70), a broken __str__…
        # The task ran: failing it is the outcome. Never re-run it for this.
        message = f"the result of {task.name} cannot be encoded: {describe(exc)}"
        return error_outcome("UnencodableResult", message), None
    cap = opts.max_result_bytes
    if cap is not None and len(raw) > cap:
        # Deterministic, like an unencodable result: failed, never retried.
        message = f"the result of {task.name} is {len(raw)} bytes, over max_result_bytes={cap}"
        return error_outcome("ResultTooLarge", message), None
    return Outcome(_SUCCEEDED, now_ms(), result=raw), None


async def _invoke(
    task: TaskDef,
    ctx: Context | None,
    args: list[Any],
    kwargs: dict[str, Any],
    threads: anyio.CapacityLimiter,
    wrap: Callable[[Callable[[], Any]], Any] | None,
) -> Any:
    if task.is_async:
        return await task.call(ctx, args, kwargs)

    def call() -> Any:
        return task.call(ctx, args, kwargs)

    # A thread cannot be interrupted: on timeout the job fails at once, but the
    # thread runs on until the function returns (its result is then dropped),
    # and the wrapper's own clean-up with it.
    run = call if wrap is None else functools.partial(wrap, call)
    return await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=threads)
