"""Periodic schedules: what to send, and when each tick falls.

A schedule fires at wall-clock times every scheduler computes the same way
(cron expressions in the schedule's time zone via ``cronsim``; ``every=N``
at whole multiples of N seconds since the epoch), so that schedulers on
different hosts agree on each tick and can claim it by its time.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

# cronsim and zoneinfo (with sysconfig, ~0.3 MB) load on the first schedule: a
# worker of an app without schedules never needs them (issue 14, worker memory).

__all__ = ["Schedule", "ScheduleInfo", "decode_schedule", "latest_fire", "next_fire"]


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """One periodic schedule: a task call and when to send it."""

    name: str
    task: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: str | None = None
    """The queue named by the signature; None routes it like a ``kiq()``."""
    options: dict[str, Any] = {}
    """Per-call options of the signature (``timeout``, ``priority``, …)."""
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    catch_up: bool = False

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ConfigurationError(f"schedule {self.name!r}: give either cron= or every=")
        if not self.name or any(c in self.name for c in "{}"):
            raise ConfigurationError(f"schedule name {self.name!r} must be non-empty, no braces")
        if self.every is not None and not (0.001 <= self.every < math.inf):
            raise ConfigurationError(
                f"schedule {self.name!r}: every= must be at least 0.001 seconds, got {self.every}"
            )
        zone(self.tz)
        if self.cron is not None:
            from cronsim import CronSim, CronSimError

            try:
                CronSim(self.cron, datetime.now(UTC))
            except CronSimError as exc:
                raise ConfigurationError(
                    f"schedule {self.name!r}: bad cron expression {self.cron!r}: {exc}"
                ) from None

    @property
    def spec(self) -> str:
        """The schedule as one line: ``cron */5 * * * * (Asia/Seoul)`` or ``every 30s``."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.tz})"
        return f"every {self.every:g}s"


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One schedule as ``app.schedules.list()`` shows it."""

    name: str
    task: str
    spec: str
    """``cron */5 * * * * (UTC)`` or ``every 30s``."""
    queue: str
    source: str
    """``code`` (defined in the app's code) or ``runtime`` (``app.schedules.add``)."""
    paused: bool
    next_run: datetime | None
    """The tick a scheduler sends next; None while paused."""
    last_run: datetime | None
    """The last tick fired; None if never."""
    last_job: str | None
    tz: str = "UTC"
    """The time zone of its cron (times print in it)."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}


def decode_schedule(data: bytes) -> Schedule:
    """A run-time schedule's stored definition (msgpack); checked like a new one."""
    return msgspec.msgpack.decode(data, type=Schedule)


def zone(name: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r} (an IANA name such as 'Asia/Seoul')"
        ) from None


def next_fire(s: Schedule, after_ms: int) -> int:
    """The first tick strictly after ``after_ms`` (ms since the epoch)."""
    if s.every is not None:
        step = round(s.every * 1000)
        return (after_ms // step + 1) * step
    assert s.cron is not None
    from cronsim import CronSim

    start = datetime.fromtimestamp(after_ms / 1000, zone(s.tz))
    return _ms(next(CronSim(s.cron, start)))


def latest_fire(s: Schedule, at_ms: int) -> int:
    """The last tick at or before ``at_ms``."""
    if s.every is not None:
        step = round(s.every * 1000)
        return (at_ms // step) * step
    assert s.cron is not None
    from cronsim import CronSim

    start = datetime.fromtimestamp(at_ms / 1000, zone(s.tz)) + timedelta(microseconds=1)
    found = _ms(next(CronSim(s.cron, start, reverse=True)))
    # cronsim's reverse walk skips the second copy of an hour repeated when the
    # clocks go back (which the forward walk fires): the forward walk decides.
    while (later := next_fire(s, found)) <= at_ms:
        found = later
    return found


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)
