"""Schedules registered on an app: ``app.schedule(sig, cron=…)`` and the
``cron=`` / ``periodic`` decorators (``App.task``, ``App.periodic``); and
``aioq.Scheduler``, which sends them (``aioq scheduler`` uses the same class)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._core.schedule import Schedule
from ._worker.scheduler import Scheduler
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .canvas import Signature

__all__ = ["Scheduler", "Scheduling"]


class Scheduling:
    """The schedule registry part of ``App``."""

    def __init__(self) -> None:
        self.schedules: dict[str, Schedule] = {}
        """Periodic schedules by name (``cron=``, ``app.periodic``, ``app.schedule``)."""

    def schedule(
        self,
        sig: Signature[Any],
        *,
        cron: str | None = None,
        every: float | None = None,
        name: str | None = None,
        tz: str = "UTC",
        catch_up: bool = False,
    ) -> Schedule:
        """Send ``sig`` (a task with its arguments, ``task.s(…)``) on a schedule:
        ``cron=`` (in time zone ``tz``) or ``every=`` seconds.

        ``name`` identifies the schedule (default: the task's name); the same
        name in two processes is the same schedule, fired once per tick.
        """
        data = sig.data
        when = Schedule(
            name=name or data.task,
            task=data.task,
            args=list(data.args),
            kwargs=dict(data.kwargs),
            queue=data.queue,
            options=dict(data.options),
            cron=cron,
            every=every,
            tz=tz,
            catch_up=catch_up,
        )
        self._add_schedule(when)
        return when

    def _add_schedule(self, when: Schedule) -> None:
        existing = self.schedules.get(when.name)
        if existing is not None and existing != when:
            raise ConfigurationError(
                f"a different schedule is already named {when.name!r}; pass name=…"
            )
        self.schedules[when.name] = when
