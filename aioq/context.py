"""``aioq.Context``: what a running task knows about itself."""

from ._core.context import Context as Context

__all__ = ["Context"]
