"""``App.wrap_sync_tasks``: code a worker runs around every sync task, in its thread.

A sync task runs in one of the worker's threads. Some libraries keep per-thread
state that must be tidied around each task: Django's database connections
(``aioq.contrib.django`` closes stale ones before and after each task, as Celery's
Django fix-up does), SQLAlchemy's ``scoped_session``, thread-local caches. A
wrapper gets the attempt as a callable with no arguments, calls it (in the same
thread) and returns what it returns::

    @app.wrap_sync_tasks
    def tidy(call):
        Session.remove()
        try:
            return call()
        finally:
            Session.remove()

Free when unused: the worker checks one attribute per attempt. Async tasks are
not wrapped (they run on the worker's event loop, not in a thread).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .errors import ConfigurationError

__all__ = ["SyncWrapping"]

W = TypeVar("W", bound=Callable[[Callable[[], Any]], Any])


class SyncWrapping:
    """The ``wrap_sync_tasks`` part of ``App``."""

    sync_task_wrapper: Callable[[Callable[[], Any]], Any] | None = None
    """All the wrappers registered, composed into one (None: no wrapper)."""

    def wrap_sync_tasks(self, wrapper: W) -> W:
        """Run every attempt of a sync task on a worker as ``wrapper(call)``, in the
        task's thread (also in ``app.inline()``). ``call()`` runs the task and
        returns its result; what the wrapper returns is the task's result, what it
        raises is the task's error. Usable as a decorator; wrappers registered
        later run inside earlier ones."""
        if not callable(wrapper):
            raise ConfigurationError(f"wrap_sync_tasks needs a callable, got {wrapper!r}")
        outer = self.sync_task_wrapper
        if outer is None:
            self.sync_task_wrapper = wrapper
        else:
            self.sync_task_wrapper = lambda call: outer(lambda: wrapper(call))
        return wrapper
