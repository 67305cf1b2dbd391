"""Schedules registered on an app: ``app.schedule(sig, cron=…)`` and the
``cron=`` / ``periodic`` decorators (``App.task``, ``App.periodic``); the
run-time ones (``app.schedules.add/pause/…``, ``schedules.py``); and
``aioq.Scheduler`` (``_worker/scheduler.py``, loaded on first use), which sends
them (``aioq scheduler`` uses the same class)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import msgspec

from ._core.schedule import Schedule
from .schedules import Schedules

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._worker.host import WorkerHost
    from .canvas import Signature
    from .task import TaskDecorator

__all__ = ["Scheduling"]

_UNSET: Any = msgspec.UNSET


class Scheduling:
    """The schedule registry part of ``App``."""

    if TYPE_CHECKING:
        task: Callable[..., Any]  # App.task

    def __init__(self) -> None:
        self.schedules = Schedules(cast("WorkerHost", self))
        """Periodic schedules by name (``cron=``, ``app.periodic``, ``app.schedule``),
        and the run-time ones (``await app.schedules.add/pause/resume/remove/list``)."""

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

    def periodic(
        self,
        every: float,
        *,
        name: str | None = None,
        catch_up: bool = False,
        queue: str = _UNSET,
        timeout: float | None = _UNSET,
        result_ttl: float = _UNSET,
        retries: int = _UNSET,
        priority: int = _UNSET,
    ) -> TaskDecorator:
        """Register a task that is sent every ``every`` seconds (with no arguments)
        whenever a scheduler runs: ``@app.periodic(every=30.0)``.

        Ticks fall on whole multiples of ``every`` since the Unix epoch, so
        every scheduler agrees on them; each is sent once however many
        schedulers run.
        """
        Schedule(name="check", task="check", every=every)  # fail at decoration time
        make = self.task(
            name=name,
            queue=queue,
            timeout=timeout,
            result_ttl=result_ttl,
            retries=retries,
            priority=priority,
        )

        def register(f: Callable[..., Any]) -> Any:
            task = make(f)
            self._add_schedule(
                Schedule(name=task.name, task=task.name, every=every, catch_up=catch_up)
            )
            return task

        return register

    def _add_schedule(self, when: Schedule) -> None:
        self.schedules._define(when)
