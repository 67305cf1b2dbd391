"""What every handler of the dashboard shares (``request.app.state.dash``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .history import History

if TYPE_CHECKING:
    import jinja2

    from ..app import App

__all__ = ["Dashboard"]


@dataclass
class Dashboard:
    """The app it shows, the CSRF secret, the polling interval, the templates and
    the throughput samples."""

    app: App
    secret: bytes
    poll_s: float
    templates: jinja2.Environment
    history: History = field(default_factory=History)
