"""Sync callers: ``task.delay()``, ``task.apply_async()``, ``app.send_task()``, ``SyncJob``.

Sync code (a Django or Flask view, a script, a thread) cannot ``await``. Every
blocking call here hands its coroutine to **one background event loop per
process** (a daemon thread named ``aioq-sync``, started on first use) and waits
for it. All threads share that loop, so every app has one Redis client per
process for all of them, and concurrent sends and waits share its pipelines and
its one pub/sub connection, exactly as concurrent ``kiq()`` calls do.

- The loop's clients are closed at interpreter exit (``atexit``), or by
  ``aioq.sync.shutdown()``; the next call starts a fresh loop.
- After ``os.fork()`` (gunicorn ``--preload``, ``multiprocessing`` with fork) the
  child starts its own loop and clients on first use. It never touches what it
  inherited: the parent's sockets and the loop's selector are shared with the
  parent, and closing or unregistering them in the child would break the parent.
  The inherited objects stay referenced (never collected) until the child exits.
- Called inside a running event loop these raise ``SyncCallInEventLoop``: a
  blocking wait there would freeze the loop (and deadlock on the bridge's own).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import msgspec

from .errors import SyncCallInEventLoop

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Sequence
    from datetime import datetime

    from ._core.host import AppHandle
    from ._transport.broker import Broker
    from .job import Job, JobInfo, JobState

__all__ = ["SyncCalls", "SyncJob", "shutdown"]

R = TypeVar("R", covariant=True)
_UNSET: Any = msgspec.UNSET
T = TypeVar("T")

log = logging.getLogger("aioq")

CLOSE_TIMEOUT = 5.0
"""Seconds ``shutdown()`` waits for the loop's clients to close."""


class _Bridge:
    """The process's background event loop and the clients used on it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        # Strong references: a client whose app was collected must still be
        # closed (its connections would warn), so they are kept until shutdown.
        self.clients: dict[int, Broker] = {}
        self.thread = threading.Thread(target=self._run, name="aioq-sync", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, client: Broker, coro: Coroutine[Any, Any, T]) -> T:
        self.clients.setdefault(id(client), client)
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt in the waiting thread: do not leave the call running
            future.cancel()
            raise

    async def _close_all(self) -> None:
        for client in list(self.clients.values()):
            try:
                await client.aclose()
            except Exception as exc:  # closing is best effort: the process is ending
                log.debug("closing an aioq client at exit: %s", exc)
        self.clients.clear()
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.loop.shutdown_asyncgens()

    def close(self) -> None:
        if self.thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._close_all(), self.loop)
            try:
                future.result(CLOSE_TIMEOUT)
            except Exception as exc:
                log.warning("aioq: closing the sync clients failed: %s", exc)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(CLOSE_TIMEOUT)
        if not self.loop.is_running():
            self.loop.close()


_lock = threading.Lock()
_bridge: _Bridge | None = None
_inherited: list[tuple[_Bridge, list[Any]]] = []
"""A forked child's copies of its parent's bridge and clients: kept, never used."""


def _bridge_for_call(hint: str) -> _Bridge:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise SyncCallInEventLoop(
            f"this call blocks until Redis answers, so it cannot run inside a running "
            f"event loop (it would freeze it); in async code use {hint}"
        )
    global _bridge
    bridge = _bridge
    if bridge is None:
        with _lock:
            bridge = _bridge
            if bridge is None:
                bridge = _bridge = _Bridge()
    return bridge


def call(client: Broker, make: Callable[[], Coroutine[Any, Any, T]], hint: str) -> T:
    """Run ``make()`` on the process's background loop and wait for its result.

    The coroutine is created only once the call is known to be allowed, so a
    refused call leaves no unawaited coroutine behind.
    """
    bridge = _bridge_for_call(hint)
    return bridge.call(client, make())


def shutdown() -> None:
    """Close the clients of the background loop and stop it (registered with
    ``atexit``; safe to call at any time, and again). The next sync call starts
    a new loop."""
    global _bridge
    with _lock:
        bridge, _bridge = _bridge, None
    if bridge is not None and bridge.pid == os.getpid():
        bridge.close()


def _after_fork_in_child() -> None:
    """Forget the parent's bridge without touching it (see the module docstring)."""
    global _bridge, _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    bridge, _bridge = _bridge, None
    if bridge is not None:
        kept = [client.forget(bridge.loop) for client in bridge.clients.values()]
        _inherited.append((bridge, kept))


atexit.register(shutdown)
os.register_at_fork(after_in_child=_after_fork_in_child)


class SyncJob(Generic[R]):
    """A handle on one job for sync code (Celery's ``AsyncResult``): what
    ``task.delay()``, ``task.apply_async()``, ``app.send_task()`` and
    ``app.job_sync(id)`` return. Every method blocks; none may be called inside
    a running event loop (use ``.job``, the async ``Job``, there)."""

    __slots__ = ("job",)

    def __init__(self, job: Job[R]) -> None:
        self.job = job
        """The async handle on the same job."""

    @property
    def id(self) -> str:
        return self.job.id

    def __repr__(self) -> str:
        return f"SyncJob({self.job.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SyncJob) and other.job.id == self.job.id

    def __hash__(self) -> int:
        return hash(self.job.id)

    def _call(self, make: Callable[[], Coroutine[Any, Any, T]], hint: str) -> T:
        return call(self.job._app.broker, make, hint)

    def get(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result (``Job.result``).

        Raises:
            TaskFailed: the task raised.
            JobAborted: the job was aborted.
            ResultTimeout: not finished within ``timeout`` seconds.
            SyncCallInEventLoop: called inside a running event loop.
        """
        return self._call(lambda: self.job.result(timeout), "`await job.result()`")

    def state(self) -> JobState:
        """The job's current state (``Job.state``)."""
        return self._call(self.job.state, "`await job.state()`")

    def info(self) -> JobInfo:
        """A snapshot of the job's record (``Job.info``)."""
        return self._call(self.job.info, "`await job.info()`")

    def ready(self) -> bool:
        """Whether the job has ended (succeeded, failed or aborted)."""
        return self.state().is_final

    def abort(self) -> bool:
        """Abort the job (``Job.abort``): False when it had already ended or is unknown."""
        return self._call(self.job.abort, "`await job.abort()`")


class SyncCalls:
    """The sync part of ``App``: ``send_task`` and ``job_sync``."""

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        priority: int = _UNSET,
        job_id: str | None = None,
        timeout: float | None = _UNSET,
        result_ttl: float = _UNSET,
        store_result: bool = _UNSET,
        retries: int = _UNSET,
        unique_for: float | None = _UNSET,
    ) -> SyncJob[Any]:
        """``send()`` for sync code (Celery's ``send_task``): enqueue a task by
        name and return a ``SyncJob``. ``countdown`` is seconds to wait (aioq's
        ``delay``). Raises ``SyncCallInEventLoop`` inside a running event loop
        (use ``await app.send(...)`` there)."""
        app = cast("AppHandle", self)
        sent = call(
            app.broker,
            lambda: app.send(
                name,
                tuple(args or ()),
                kwargs,
                queue=queue,
                timeout=timeout,
                result_ttl=result_ttl,
                store_result=store_result,
                retries=retries,
                priority=priority,
                delay=countdown,
                eta=eta,
                job_id=job_id,
                unique_for=unique_for,
            ),
            "`await app.send(...)`",
        )
        return SyncJob(sent)

    def job_sync(self, job_id: str) -> SyncJob[Any]:
        """A ``SyncJob`` handle on an existing job, from its id, for sync code."""
        return SyncJob(cast("AppHandle", self).job(job_id))
