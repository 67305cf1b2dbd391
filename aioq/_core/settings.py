"""The app-wide settings the runtime reads (``App.settings``): plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    """A snapshot of an ``App``'s settings, for workers and schedulers (see ``App``)."""

    url: str
    prefix: str
    default_queue: str
    result_ttl: float
    visibility_timeout: float
    max_message_bytes: int
    dead_letter_maxlen: int
    operation_timeout: float
    events_maxlen: int = 0
    """Cap of each queue's lifecycle event stream; 0: workers write no events."""
    include: tuple[str, ...] = ()
