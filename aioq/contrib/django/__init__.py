"""Django integration (``pip install 'aioq[django]'``).

- ``install(app)``: database connections closed/recycled around every sync task
  on a worker (``close_old_connections()`` before and after, as Celery's Django
  fix-up does); ``setup(app)`` also sets Django up and imports each installed
  app's ``tasks`` module, for a worker's entry point.
- ``AioqBackend``: a backend for Django's task framework (``django.tasks``,
  Django ≥ 6.0, or the ``django-tasks`` backport on older Django), so
  ``@task`` functions run on aioq workers.
- ``aioq worker aioq.contrib.django.worker:app``: a worker for the ``TASKS``
  backend, without an App module of your own.

See docs/integrations.md.
"""

from typing import TYPE_CHECKING, Any

from .db import aclose_old_connections as aclose_old_connections
from .db import close_connections_around as close_connections_around
from .db import install as install
from .setup import setup as setup

if TYPE_CHECKING:
    from .backend import AioqBackend as AioqBackend

__all__ = [
    "AioqBackend",
    "aclose_old_connections",
    "close_connections_around",
    "install",
    "setup",
]


def __getattr__(name: str) -> Any:
    # The backend needs django.tasks (or its backport); install() and setup() do not.
    if name == "AioqBackend":
        from .backend import AioqBackend

        return AioqBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
