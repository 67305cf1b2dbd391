"""Helpers for testing code that uses aioq.

- ``running_worker(app, ...)``: an in-process worker with ``drain()``.
- ``inline(app)`` (or ``app.inline()``): ``kiq()`` runs the task at once, no Redis.
- The pytest plugin ``aioq.testing.plugin`` (registered by entry point): fixtures
  ``aioq_redis_url`` and ``aioq_worker``. See docs/testing.md.
"""

from __future__ import annotations

from .inline import inline
from .worker import RunningWorker, running_worker

__all__ = ["RunningWorker", "inline", "running_worker"]
