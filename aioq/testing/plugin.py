"""The aioq pytest plugin, registered by the ``pytest11`` entry point ``aioq``.

Fixtures:

- ``aioq_redis_url`` (session): ``AIOQ_REDIS_URL`` when it is set and answers,
  else a private ``redis-server`` on a free loopback port for the session
  (exported as ``AIOQ_REDIS_URL`` meanwhile, so worker subprocesses find it).
  Tests using it are skipped, with the fix in the message, when neither exists.
- ``aioq_worker``: ``async with aioq_worker(app, queues=..., concurrency=...) as w``
  runs an in-process worker; ``await w.drain()`` waits until its queues are empty
  and nothing runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from .redis import INSTALL_HINT, PrivateRedis, redis_server, user_url
from .worker import RunningWorker, running_worker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractAsyncContextManager

SKIP_REASON = "no Redis for aioq's tests. " + INSTALL_HINT


@pytest.fixture(scope="session")
def aioq_redis_url() -> Iterator[str]:
    """A Redis URL for the test session (see the module docstring)."""
    url = user_url()
    if url is not None:
        yield url
        return
    binary = redis_server()
    if binary is None:
        pytest.skip(SKIP_REASON)
    server = PrivateRedis(binary)
    server.start()
    saved = {k: os.environ.get(k) for k in ("AIOQ_REDIS_URL", "AIOQ_PRIVATE_REDIS")}
    os.environ["AIOQ_REDIS_URL"] = server.url
    os.environ["AIOQ_PRIVATE_REDIS"] = "1"
    try:
        yield server.url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def aioq_worker() -> Callable[..., AbstractAsyncContextManager[RunningWorker]]:
    """``running_worker``: ``async with aioq_worker(app, ...) as w: ...; await w.drain()``."""
    return running_worker
