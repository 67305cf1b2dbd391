"""Database connection hygiene around each sync task, as Celery's Django fix-up does.

Django opens one database connection per thread and closes it at the end of each
request (``request_finished``). A worker has no requests: without help, a sync
task's thread keeps its connection past ``CONN_MAX_AGE``, and one the database
dropped (a restart, a failover, an idle timeout) fails the next task that uses
it. ``install(app)`` makes every sync task run between two calls of Django's
``close_old_connections()`` (which closes the thread's connections that are
unusable, or older than ``CONN_MAX_AGE``; with the default ``CONN_MAX_AGE = 0``,
all of them), and closes the caches' connections after each task.

Async tasks are not wrapped: the async ORM runs its queries in asgiref's one
thread-sensitive thread, whose connection lives until ``aclose_old_connections()``
is awaited (call it where a long-running async task starts, if the database may
have dropped the connection meanwhile).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import close_caches
from django.db import close_old_connections

if TYPE_CHECKING:
    from collections.abc import Callable

    from aioq import App

__all__ = ["aclose_old_connections", "close_connections_around", "install"]

T = TypeVar("T")

_installed: weakref.WeakSet[App] = weakref.WeakSet()


def close_connections_around(call: Callable[[], T]) -> T:
    """Run ``call()`` between two ``close_old_connections()``; close the caches after."""
    close_old_connections()
    try:
        return call()
    finally:
        close_old_connections()
        close_caches()


def install(app: App) -> App:
    """Wrap every sync task of ``app`` in ``close_connections_around`` (once, however
    often it is called). Returns the app."""
    if app not in _installed:
        app.wrap_sync_tasks(close_connections_around)
        _installed.add(app)
    return app


async def aclose_old_connections() -> None:
    """``close_old_connections()`` for the async ORM's thread (from async code)."""
    await sync_to_async(close_old_connections, thread_sensitive=True)()
