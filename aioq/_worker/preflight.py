"""Checks a worker makes before it starts: import the app's task modules, then
warn (or, with ``strict``, refuse to start) when it serves no task at all, or
when its routes or schedules name tasks it does not have. A worker started the
Celery way (``aioq worker celery_app:app`` with the tasks in another module)
would otherwise register nothing and dead-letter every job in silence."""

from __future__ import annotations

import fnmatch
import importlib
import logging
from typing import TYPE_CHECKING

import anyio

from .._core.options import check_number
from .._transport.connection import OUTAGE_ERRORS, eviction_problem, outage_text
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .._transport.broker import WorkerBroker
    from .host import WorkerHost

__all__ = ["check", "check_tasks", "import_modules"]

log = logging.getLogger("aioq")


def import_modules(modules: Iterable[str]) -> None:
    """Import each task module (``App(include=…)``, ``aioq worker --include``);
    a module that cannot be imported is a ``ConfigurationError`` naming it."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import task module {name!r}: {exc}") from exc


def problems(app: WorkerHost) -> list[str]:
    """What is wrong with the app's task list, one sentence each."""
    names = set(app.registry.names())
    found: list[str] = []
    if not names:
        found.append(
            "no task is registered: every job this worker reads will be dead-lettered "
            "(list your task modules in App(include=[...]) or pass --include MODULE)"
        )
    found.extend(
        f"route {pattern!r} matches no task this worker has"
        for pattern in app.route_patterns()
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names)
    )
    found.extend(
        f"schedule {s.name!r} sends task {s.task!r}, not registered"
        for s in app.schedules.values()
        if s.task not in names
    )
    return found


def check_tasks(app: WorkerHost, strict: bool) -> None:
    """Import ``app.include``, then log each problem as a warning, or raise
    ``ConfigurationError`` for the first one with ``strict``."""
    import_modules(app.settings.include)
    for problem in problems(app):
        if strict:
            raise ConfigurationError(f"{problem}; refusing to start (strict)")
        log.warning("%s", problem)


def check(app: WorkerHost, strict: bool, *, grace: float, connect_timeout: float) -> None:
    """Everything ``Worker(...)`` checks before it is built: its own settings
    (one ``ConfigurationError`` each), then the app's tasks (``check_tasks``)."""
    check_number("grace", grace, positive=False)
    check_number("connect_timeout", connect_timeout, positive=False)
    check_tasks(app, strict)


async def prepare(session: WorkerBroker, queues: Sequence[str], strict: bool) -> set[str]:
    """Check the server, load the scripts, create the groups: retried through
    outages (a Redis still LOADING, BUSY, failing over) until they are done.
    Returns the level streams of ``queues`` that exist (``ensure_groups``)."""
    failing = checked = False
    while True:
        try:
            if not checked:
                await session.check_server()
                _check_eviction(session.url, await session.eviction_policy(), strict)
                checked = True
            await session.load_scripts()
            return await session.ensure_groups(queues)
        except OUTAGE_ERRORS as exc:
            if not failing:
                log.warning("Redis cannot serve yet (%s); retrying", outage_text(exc))
                failing = True
            await anyio.sleep(0.5)


def _check_eviction(url: str, policy: str | None, strict: bool) -> None:
    """An evicting Redis deletes records, messages and locks silently: say so
    (refuse to start with ``strict``)."""
    problem = eviction_problem(url, policy)
    if problem is None:
        return
    if strict:
        raise ConfigurationError(f"{problem}; refusing to start (strict)")
    log.warning("%s", problem)
