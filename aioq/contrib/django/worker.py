"""A worker for Django projects: ``aioq worker aioq.contrib.django.worker:app``.

With ``DJANGO_SETTINGS_MODULE`` set, importing this module sets Django up,
imports the ``tasks`` module of every installed app (as Celery's
``autodiscover_tasks`` does) and exposes the App of the ``TASKS`` backend named by
``$AIOQ_DJANGO_BACKEND`` (default ``"default"``), which must be an
``AioqBackend``. Projects with an App of their own point the worker at it
instead (``aioq worker mysite.aioq_app:app``) and call ``setup()`` there.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ._compat import task_backends
from .backend import AioqBackend
from .setup import setup

if TYPE_CHECKING:
    from aioq import App

__all__ = ["app"]


def _backend_app() -> App:
    setup()
    alias = os.environ.get("AIOQ_DJANGO_BACKEND", "default")
    backend = task_backends[alias]
    if not isinstance(backend, AioqBackend):
        raise SystemExit(
            f"TASKS[{alias!r}] is a {type(backend).__name__}, not "
            "aioq.contrib.django.AioqBackend: nothing for an aioq worker to run"
        )
    return backend.app


app = _backend_app()
