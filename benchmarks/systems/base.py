"""The interface every adapter module provides, and helpers they share.

An adapter module (``benchmarks/systems/<name>_.py``) is imported in two places:

* by the harness (the project's venv), for its metadata only: ``PACKAGES`` (pip
  requirements of its own venv, or ``None`` for the project venv), ``BATCH``
  (whether it has a batch enqueue API), ``MULTIPROC`` (whether ``-w N`` exists),
  ``RECOVERY`` (scenario F) and ``worker_cmd(python, workers, concurrency)``;
* by worker processes and ``benchmarks/driver.py`` inside the system's venv, where
  the peer library is importable: the tasks ``noop()``, ``sleep(seconds)``, ``io()``
  (one INCR: ``incr``) and a ``Client`` class (see :class:`Client`).

Peer code is therefore guarded by ``if AVAILABLE:`` so the harness can import the
module without the peer installed.

Worker processes get their parameters from the environment: ``BENCH_REDIS_URL``,
``BENCH_PREFIX`` (aioq and raw only), ``BENCH_VT`` (visibility timeout, aioq) and
``BENCH_CONCURRENCY`` (systems whose concurrency lives in a settings object).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")
VISIBILITY_TIMEOUT = float(os.environ.get("BENCH_VT", "5.0"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "100"))
IO_KEY = f"{PREFIX}:io"
"""The counter every ``io`` and ``io_shared`` task increments (B_io, B_io_shared):
the harness checks it reached the number of jobs."""

_task_clients: dict[int, Any] = {}
_sync_client: Any = None


async def incr() -> None:
    """The body of every async ``io`` task: one INCR through a redis-py client the
    task module opened itself (one per process and event loop, as a task's own
    code would keep it), not the framework's."""
    import redis.asyncio as aredis

    loop = id(asyncio.get_running_loop())
    client = _task_clients.get(loop)
    if client is None:
        client = _task_clients[loop] = aredis.Redis.from_url(REDIS_URL, max_connections=10_000)
    await client.incr(IO_KEY)


def incr_sync() -> None:
    """The body of every sync ``io`` task (thread pools): one INCR, own client."""
    global _sync_client
    if _sync_client is None:
        import redis

        _sync_client = redis.Redis.from_url(REDIS_URL, max_connections=10_000)
    _sync_client.incr(IO_KEY)


def open_client() -> Any:
    """Scenario B_io_shared: the redis.asyncio client a system's worker start-up
    hook makes once per worker process and hands its tasks (aioq ``ctx.state``,
    arq's and saq's ``ctx``, taskiq's ``TaskiqState``, …). No I/O until used."""
    import redis.asyncio as aredis

    return aredis.Redis.from_url(REDIS_URL, max_connections=10_000)


def open_sync_client() -> Any:
    """``open_client`` for the thread-pool workers (Celery, Dramatiq)."""
    import redis

    return redis.Redis.from_url(REDIS_URL, max_connections=10_000)


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Client:
    """What the driver calls; one instance per driver process (one event loop).

    ``enqueue(task, args)`` returns an opaque handle; ``enqueue_many`` exists when
    ``BATCH``; ``result(handle, timeout)`` waits the way the system's docs do;
    ``remaining(handles)`` counts jobs whose result is not visible yet, cheaply.
    """

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def enqueue(self, task: str, args: tuple[Any, ...]) -> Any:
        raise NotImplementedError

    async def enqueue_many(self, task: str, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        raise NotImplementedError

    async def result(self, handle: Any, timeout: float) -> Any:
        raise NotImplementedError

    async def remaining(self, handles: Sequence[Any]) -> int:
        raise NotImplementedError


class KeyWindow:
    """Counts handles whose result key does not exist yet, checking a sliding window.

    Results appear roughly in enqueue order, so each poll checks only the oldest
    ``window`` unfinished handles (one pipelined EXISTS each): about one EXISTS
    per job over a whole run, instead of one per job per poll.
    """

    def __init__(self, redis: Any, key: Callable[[Any], str], window: int = 2000) -> None:
        self.redis = redis
        self.key = key
        self.window = window
        self.todo: list[Any] | None = None

    async def remaining(self, handles: Sequence[Any]) -> int:
        if self.todo is None:
            self.todo = list(handles)
        while self.todo:
            head = self.todo[: self.window]
            pipe = self.redis.pipeline(transaction=False)
            for h in head:
                pipe.exists(self.key(h))
            found = await pipe.execute()
            left = [h for h, f in zip(head, found, strict=True) if not f]
            self.todo = left + self.todo[self.window :]
            if left:
                break
        return len(self.todo)


class SyncClient(Client):
    """For synchronous client libraries: calls run in a 32-thread pool."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(32)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def close(self) -> None:
        self.pool.shutdown(wait=False)
