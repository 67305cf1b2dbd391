"""The interface every adapter module provides, and helpers they share.

An adapter module (``benchmarks/systems/<name>_.py``) is imported in two places:

* by the harness (the project's venv), for its metadata only: ``PACKAGES`` (pip
  requirements of its own venv, or ``None`` for the project venv), ``BATCH``
  (whether it has a batch enqueue API), ``MULTIPROC`` (whether ``-w N`` exists),
  ``RECOVERY`` (scenario F) and ``worker_cmd(python, workers, concurrency)``;
* by worker processes and ``benchmarks/driver.py`` inside the system's venv, where
  the peer library is importable: the tasks ``noop()`` and ``sleep(seconds)`` and
  a ``Client`` class (see :class:`Client`).

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
