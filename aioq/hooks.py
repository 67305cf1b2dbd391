"""Hooks an ``App`` offers: a worker's lifespan, middleware around every
execution, and hooks around every send (docs/hooks.md).

    @app.on_worker_start
    async def open_pool() -> dict[str, Any]:
        return {"db": await asyncpg.create_pool(DSN)}   # ctx.state["db"] in tasks

    @app.on_worker_stop
    async def close_pool(state: Mapping[str, Any]) -> None:
        await state["db"].close()

    @app.middleware
    async def timing(ctx: aioq.Context, call_next) -> Any:
        began = time.perf_counter()
        try:
            return await call_next()
        finally:
            log.info("%s took %.3fs", ctx.task_name, time.perf_counter() - began)

    @app.before_enqueue
    def tag(call: aioq.Enqueue) -> None:
        call.headers["tenant"] = current_tenant()
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from ._core.hooks import Enqueue, Hooks, run_enqueue
from ._core.options import TaskOptions, validate

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._core.canvas import Launch
    from ._core.hooks import EnqueueMiddleware
    from ._core.host import TaskHost
    from ._core.options import Effective, When

__all__ = ["Enqueue", "Hooking"]

F = TypeVar("F", bound="Callable[..., Any]")


class Hooking:
    """The hook decorators of ``App``; each returns the function unchanged."""

    def __init__(self) -> None:
        self.hooks = Hooks()

    def on_worker_start(self, fn: F) -> F:
        """Run ``fn()`` (async or sync) once in each worker process, before it reads
        any message. A mapping it returns is merged into ``ctx.state`` (read-only,
        the same for every task of that process); a key set by two hooks is an
        error. If it raises, the worker does not start."""
        self.hooks.add_start(fn)
        return fn

    def on_worker_stop(self, fn: F) -> F:
        """Run ``fn()`` or ``fn(state)`` (async or sync) once in each worker process,
        after its last task ended and its completions were written; ``state`` is
        ``ctx.state``. Runs even when a later start hook failed; an exception is
        logged and the other stop hooks still run."""
        self.hooks.add_stop(fn)
        return fn

    def middleware(self, fn: F) -> F:
        """Wrap every execution of every task (async and sync ones) of a worker of
        this app: ``async def mw(ctx: aioq.Context, call_next) -> Any`` awaits
        ``call_next()`` for the task's result and returns the result to store.
        The first registered is the outermost. It runs on the worker's event loop
        inside the task's timeout; an exception it raises (or lets through) is the
        attempt's failure, retried or failed as the task's own would be."""
        self.hooks.add_middleware(fn)
        return fn

    def before_enqueue(self, fn: F) -> F:
        """Call ``fn(call: aioq.Enqueue)`` (async or sync) before each message this
        app sends (``kiq``, ``send``, ``delay``, ``kiq_many``, a workflow's first
        steps): it may read or change the call's queue, priority, timeout, retries,
        arguments and headers; raising refuses the send (``kiq()`` raises it and
        nothing is written). Hooks run in registration order."""
        self.hooks.add_before_enqueue(fn)
        return fn

    def enqueue_middleware(self, fn: F) -> F:
        """Wrap each send: ``async def mw(call: aioq.Enqueue, call_next) -> str``
        awaits ``call_next()`` (which writes the message and returns the job id);
        for what must happen after the send as well as before (a tracing span).
        Shares one chain with ``before_enqueue`` hooks, in registration order."""
        self.hooks.add_enqueue(fn)
        return fn


async def submit_hooked(
    app: TaskHost,
    name: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    call: TaskOptions,
    when: When | None,
    job_id: str | None,
    opts: Effective,
    partition_key: str | int | None = None,
) -> str:
    """``App._submit`` through the app's enqueue hooks (which see the logical
    queue; the partition is picked after them)."""
    timeout = call.timeout if isinstance(call.timeout, (int, float)) else None
    retries = call.retries if isinstance(call.retries, int) else None
    sent = Enqueue(
        name,
        job_id or uuid.uuid4().hex,
        list(args),
        dict(kwargs),
        queue=opts.queue,
        priority=opts.priority,
        timeout=timeout,
        retries=retries,
        delayed=when is not None,
    )
    before = (sent.queue, sent.priority, sent.timeout, sent.retries)

    async def send() -> str:
        final, resolved = call, opts
        if (sent.queue, sent.priority, sent.timeout, sent.retries) != before:
            final = call.merged(_overrides(sent))
            resolved = app.options_for(name, final)
        return await app._submit(
            name,
            sent.args,
            sent.kwargs,
            final,
            when,
            job_id,
            resolved,
            hooked=sent,
            partition_key=partition_key,
        )

    return await run_enqueue(app.hooks.enqueue, sent, send)


def _overrides(sent: Enqueue) -> TaskOptions:
    """What enqueue hooks set on a call, checked like any option."""
    found: dict[str, Any] = {"queue": sent.queue, "priority": sent.priority}
    if sent.timeout is not None:
        found["timeout"] = sent.timeout
    if sent.retries is not None:
        found["retries"] = sent.retries
    return validate(TaskOptions(**found))


async def launch_hooked(
    wrappers: tuple[EnqueueMiddleware, ...],
    launches: list[Launch],
    send: Callable[[dict[str, tuple[Launch, dict[str, str] | None]]], Awaitable[None]],
) -> None:
    """Send a workflow's first messages through the enqueue hooks: each gets its
    own chain, and the innermost steps meet: once every chain reached its
    ``call_next``, ``send`` writes the whole workflow at once and they all
    return. A hook that raises refuses the whole workflow (nothing is written)."""
    calls = [
        Enqueue(
            a.sig.task,
            a.job_id,
            [*a.prefix, *a.sig.args],
            dict(a.sig.kwargs),
            queue=a.sig.queue,
            priority=a.sig.options.get("priority", 0),
            timeout=a.sig.options.get("timeout"),
            retries=a.sig.options.get("retries"),
        )
        for a in launches
    ]
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    arrived = 0

    async def meet(launch: Launch, call: Enqueue) -> str:
        nonlocal arrived
        arrived += 1
        if arrived == len(calls):
            try:
                ready = {c.job_id: (_relaunch(a, c), c.checked_headers()) for a, c in zips}
                await send(ready)
            except BaseException as exc:
                gate.set_exception(exc)
                raise
            gate.set_result(None)
        else:
            await asyncio.shield(gate)
        return call.job_id

    async def one(launch: Launch, call: Enqueue) -> str:
        try:
            return await run_enqueue(wrappers, call, lambda: meet(launch, call))
        except BaseException as exc:
            if not gate.done():  # refused before the meeting point: release the others
                gate.set_exception(exc)
            raise

    zips = list(zip(launches, calls, strict=True))
    results = await asyncio.gather(*(one(a, c) for a, c in zips), return_exceptions=True)
    if gate.done() and gate.exception() is not None:
        raise gate.exception()  # type: ignore[misc]
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _relaunch(launch: Launch, call: Enqueue) -> Launch:
    """A workflow's first message as the hooks left it."""
    over = _overrides(call)
    options = dict(launch.sig.options)
    options["priority"] = call.priority
    for field in ("timeout", "retries"):
        value = getattr(over, field)
        if value is not msgspec.UNSET:
            options[field] = value
    sig = msgspec.structs.replace(
        launch.sig, args=list(call.args), kwargs=dict(call.kwargs), queue=call.queue
    )
    sig = msgspec.structs.replace(sig, options=options)
    return dataclasses.replace(launch, sig=sig, prefix=[])
