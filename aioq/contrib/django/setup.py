"""``setup()``: make a worker process ready to run a Django project's tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import django
from django.apps import apps
from django.utils.module_loading import autodiscover_modules

from .db import install

if TYPE_CHECKING:
    from aioq import App

__all__ = ["setup"]


def setup(app: App | None = None, *, modules: tuple[str, ...] = ("tasks",)) -> App | None:
    """Set Django up (``django.setup()``, once; ``DJANGO_SETTINGS_MODULE`` must be
    set), import the ``modules`` of every installed app (``myapp.tasks``: their
    ``@app.task`` and ``@task`` functions register themselves), and give ``app``'s
    sync tasks Django's connection hygiene (``install``). Returns ``app``."""
    if not apps.ready:
        django.setup()
    if app is not None:
        install(app)
    autodiscover_modules(*modules)
    return app
