"""``inline(app)``: ``kiq()`` runs tasks at once in this process, without Redis."""

from __future__ import annotations

from .._worker.inline import InlineBroker, inline

InlineClient = InlineBroker
"""The former name of ``InlineBroker``."""

__all__ = ["InlineBroker", "InlineClient", "inline"]
