"""``app.schedules``: the app's schedules — those in its code, read like a dict
(name → ``Schedule``) — and, at run time, ``add`` / ``remove`` / ``pause`` /
``resume`` / ``list`` of schedules kept in Redis, which every scheduler of the
app follows (``aioq schedule list|pause|resume|remove``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from ._core.message import new_message
from ._core.options import unwire, wire
from ._core.schedule import Schedule, ScheduleInfo, decode_schedule
from .errors import ConfigurationError

# The scheduler's module (with cronsim) loads when a run-time schedule is used:
# a worker without schedules never needs it (issue 14, worker memory).

if TYPE_CHECKING:
    import builtins
    from collections.abc import Sequence

    from ._worker.host import WorkerHost
    from .task import Task

__all__ = ["ScheduleInfo", "Schedules"]


class Schedules(Mapping[str, Schedule]):
    """The schedules of an app. As a mapping: those defined in its code
    (``cron=``, ``@app.periodic``, ``app.schedule``). The coroutines act on
    Redis, for every scheduler of the app at once:

    - ``add`` a schedule (kept in Redis: it survives restarts, every scheduler
      sends it, within about 2 s of the call);
    - ``pause`` / ``resume`` any schedule, from the code or added; a paused
      schedule sends nothing, and resuming does not back-fill the ticks missed
      while paused (whatever its ``catch_up``);
    - ``remove`` one added at run time;
    - ``list`` them all with their next and last run.
    """

    def __init__(self, app: WorkerHost) -> None:
        self._app = app
        self._code: dict[str, Schedule] = {}

    # -- the schedules of the code (a mapping) -----------------------------------

    def __getitem__(self, name: str) -> Schedule:
        return self._code[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._code)

    def __len__(self) -> int:
        return len(self._code)

    def __repr__(self) -> str:
        return f"<Schedules {sorted(self._code)}>"

    def _define(self, when: Schedule) -> None:
        existing = self._code.get(when.name)
        if existing is not None and existing != when:
            raise ConfigurationError(
                f"a different schedule is already named {when.name!r}; pass name=…"
            )
        self._code[when.name] = when

    # -- at run time, in Redis --------------------------------------------------

    async def add(
        self,
        name: str,
        task: str | Task[Any, Any],
        *,
        cron: str | None = None,
        every: float | None = None,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        tz: str = "UTC",
        catch_up: bool = False,
    ) -> Schedule:
        """Add a schedule (or replace the one added under ``name``): send ``task``
        (a task or its name) with ``args`` / ``kwargs`` on ``cron=`` (in ``tz``)
        or ``every=`` seconds. Its first tick is the first after now.

        Raises ``ConfigurationError`` for a bad cron, ``every`` or time zone, or a
        name the code already uses; ``TypeError`` / ``MessageTooLarge`` when the
        call cannot be sent."""
        if name in self._code:
            raise ConfigurationError(f"schedule {name!r} is defined in the code; pick another name")
        options = {"priority": priority} if priority is not None else {}
        when = Schedule(
            name=name,
            task=task if isinstance(task, str) else task.name,
            args=list(args),
            kwargs=dict(kwargs or {}),
            queue=queue,
            options=options,
            cron=cron,
            every=every,
            tz=tz,
            catch_up=catch_up,
        )
        from ._worker.scheduler import placement

        app = self._app
        where, level = placement(app, when)
        new_message(  # fails now, not at its first tick
            when.task,
            where,
            when.args,
            when.kwargs,
            **(wire(unwire(when.options)) | {"priority": level}),
            max_bytes=app.max_message_bytes,
            signer=app.signer,
            job_id=f"{name}@0",
        )
        await app.broker.put_schedule(name, msgspec.msgpack.encode(when))
        # a schedule removed earlier under this name left its state paused
        await app.broker.pause_schedule(where, name, resume=True)
        return when

    async def remove(self, name: str) -> bool:
        """Remove a schedule added at run time (every scheduler stops sending it);
        False when there is none of that name. A schedule of the code cannot be
        removed here (``ConfigurationError``): pause it, or delete it from the code."""
        if name in self._code:
            raise ConfigurationError(
                f"schedule {name!r} is defined in the code: pause it, or remove it from the code"
            )
        broker = self._app.broker
        data = (await broker.schedule_definitions()).get(name)
        if data is None:
            return False
        # paused first: a scheduler that has not reloaded yet sends nothing more
        from ._worker.scheduler import placement

        queue = placement(self._app, decode_schedule(data))[0]
        await broker.pause_schedule(queue, name, resume=False)
        return await broker.forget_schedule(name)

    async def pause(self, name: str) -> bool:
        """Pause schedule ``name`` (of the code or added): no scheduler sends it
        until ``resume``. False when it was paused already. ``KeyError`` when
        there is no such schedule."""
        return await self._pause(name, resume=False)

    async def resume(self, name: str) -> bool:
        """Resume a paused schedule from its next tick after now: the ticks it
        missed while paused are not sent. False when it was not paused."""
        return await self._pause(name, resume=True)

    async def _pause(self, name: str, resume: bool) -> bool:
        broker = self._app.broker
        s = self._code.get(name)
        if s is None:
            data = (await broker.schedule_definitions()).get(name)
            if data is None:
                raise KeyError(f"no schedule named {name!r}, in the code or added at run time")
            s = decode_schedule(data)
        from ._worker.scheduler import placement

        return await broker.pause_schedule(placement(self._app, s)[0], name, resume)

    async def list(self) -> builtins.list[ScheduleInfo]:
        """Every schedule — of the code, then those added at run time — with its
        state: paused or not, next run (when a scheduler runs), last run and job."""
        from ._worker.scheduler import placement, resume_from, upcoming

        app, broker = self._app, self._app.broker
        added = await broker.schedule_definitions()
        found: builtins.list[tuple[Schedule, str]] = [(s, "code") for s in self._code.values()]
        for name in sorted(added):
            if name not in self._code:
                try:
                    found.append((decode_schedule(added[name]), "runtime"))
                except (msgspec.ValidationError, msgspec.DecodeError, ConfigurationError):
                    continue  # written by another version; its schedulers send it
        where = [placement(app, s)[0] for s, _ in found]
        states = await broker.schedule_states(
            list(zip(where, (s.name for s, _ in found), strict=True))
        )
        now = await broker.redis_time()
        out = []
        for (s, source), queue, state in zip(found, where, states, strict=True):
            paused = state is not None and state.paused
            planned = resume_from(s, state.planned_from if state else None, now)
            last = state.last_ms if state else None
            out.append(
                ScheduleInfo(
                    name=s.name,
                    task=s.task,
                    spec=s.spec,
                    queue=queue,
                    source=source,
                    paused=paused,
                    next_run=None if paused else _at(upcoming(s, planned, now)[0]),
                    last_run=_at(last) if last is not None else None,
                    last_job=state.last_job if state and state.last_job else None,
                    tz=s.tz,
                    args=s.args,
                    kwargs=s.kwargs,
                )
            )
        return out


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
