"""``aioq.Worker``: run tasks from Python (the ``aioq worker`` command uses the same class)."""

from ._worker.worker import Worker as Worker

__all__ = ["Worker"]
