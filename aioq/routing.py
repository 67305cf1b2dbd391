"""Routing rules: which queue and priority a task's calls get when neither the
call nor the task says (``app.routes({...})``)."""

from __future__ import annotations

import fnmatch
from typing import Any

from ._core.options import TaskOptions, validate
from ._core.partitions import Partitions
from .errors import ConfigurationError

__all__ = ["Routing"]


class Routing:
    """The ``routes``/``route``/``queue`` part of ``App``."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, TaskOptions]] = []
        self._routes_version = 0
        self.partitions = Partitions()
        """The queues declared with ``queue()``, partitioned or not."""

    def queue(self, name: str, *, partitions: int = 1) -> None:
        """Declare the queue ``name``: workers of this app read it by default.

        With ``partitions=N`` (up to 1024) it is a logical queue spread over N
        physical queues ``name#0`` … ``name#N-1``, each with its own Redis Cluster
        hash tag (so its own slot). A call picks a partition by its
        ``partition_key`` (else a unique job's lock key) when it has one, else in
        turn; a worker asked for ``name`` reads every partition, ``status()``
        and ``purge()`` cover them all (docs/guide.md, "Partitioned queues").
        Every process of the app must declare the same count.
        """
        self.partitions.declare(name, partitions)

    def routes(self, rules: dict[str, str | dict[str, Any]]) -> None:
        """Route tasks by name: ``{"reports.*": "reports", "images.resize":
        {"queue": "images", "priority": 5}}`` (glob patterns; the first matching
        rule wins, in the order given; later calls add rules after earlier ones).

        A call's own ``queue``/``priority`` wins over the task's, which wins over
        these rules, which win over the app's default queue (priority 0).
        """
        for pattern, target in rules.items():
            if not isinstance(target, (str, dict)):
                raise ConfigurationError(
                    f"route {pattern!r}: the target must be a queue name or a dict of "
                    f"'queue'/'priority', got {target!r}"
                )
            spec = {"queue": target} if isinstance(target, str) else dict(target)
            unknown = set(spec) - {"queue", "priority"}
            if unknown:
                raise ConfigurationError(
                    f"route {pattern!r}: only 'queue' and 'priority' can be routed, "
                    f"not {sorted(unknown)}"
                )
            try:
                self._routes.append((pattern, validate(TaskOptions(**spec))))
            except ConfigurationError as exc:
                raise ConfigurationError(f"route {pattern!r}: {exc}") from None
        self._routes_version += 1

    def route_patterns(self) -> list[str]:
        """The task-name patterns of the routing rules, in order."""
        return [pattern for pattern, _ in self._routes]

    def route(self, task: str) -> TaskOptions:
        """The queue/priority the routing rules give ``task`` (fields unset if none)."""
        for pattern, target in self._routes:
            if fnmatch.fnmatchcase(task, pattern):
                return target
        return TaskOptions()
