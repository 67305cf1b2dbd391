"""``inline(app)``: ``kiq()`` runs tasks at once in this process, without Redis."""

from __future__ import annotations

from .._worker.inline import InlineClient, inline

__all__ = ["InlineClient", "inline"]
