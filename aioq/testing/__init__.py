"""Helpers for testing code that uses aioq.

- ``running_worker(app, ...)``: an in-process worker with ``drain()``.
- The pytest plugin ``aioq.testing.plugin`` (registered by entry point): fixtures
  ``aioq_redis_url`` and ``aioq_worker``. See docs/testing.md.
"""

from __future__ import annotations

from .worker import RunningWorker, running_worker

__all__ = ["RunningWorker", "running_worker"]
