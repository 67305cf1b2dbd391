"""What the runtime sees of an ``App``: a Protocol, so ``_worker/`` never imports
``app.py`` (which imports ``_worker``): the broker, the task registry, the
schedules and a settings snapshot, plus ``AppHandle`` (handed to tasks as
``ctx.app``). ``App`` implements it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .._core.host import AppHandle

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from .._core.hooks import Hooks
    from .._core.options import TaskOptions
    from .._core.registry import Registry
    from .._core.schedule import Schedule
    from .._core.settings import Settings
    from .._core.status import Status


class WorkerHost(AppHandle, Protocol):
    """An ``App``, as a worker or a scheduler sees it."""

    registry: Registry
    hooks: Hooks
    sync_task_wrapper: Callable[[Callable[[], Any]], Any] | None
    """Run around each sync task attempt, in its thread (``App.wrap_sync_tasks``)."""

    @property
    def schedules(self) -> Mapping[str, Schedule]: ...

    @property
    def settings(self) -> Settings: ...

    def placement(self, task: str, call: TaskOptions | None = None) -> tuple[str, int]: ...

    def route_patterns(self) -> list[str]: ...

    async def status(self, queues: Sequence[str] | None = None) -> Status: ...
