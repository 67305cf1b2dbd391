"""What code below the ``App`` sees of it: Protocols, so that nothing imports
``app.py`` (which imports them all) — no import cycle, not even a type-only one.

``AppHandle`` is ``ctx.app`` and what a ``Job`` or a dead-letter / status helper
uses; ``TaskHost`` adds what ``Task`` and workflows need to send. The runtime's
view (the registry, schedules and settings) is ``_worker/host.py``'s
``WorkerHost``. ``App`` implements all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from .._transport.broker import Broker
    from .options import Effective, TaskOptions, When
    from .partitions import Partitions
    from .signing import Signer


class AppHandle(Protocol):
    """An ``App``, as a running task (``ctx.app``) and the user API's helpers see it."""

    url: str
    prefix: str
    default_queue: str
    result_ttl: float
    max_message_bytes: int
    events_maxlen: int
    """Cap of each queue's lifecycle event stream (``App(events_maxlen=…)``); 0: off."""
    broker: Broker
    signer: Signer | None
    """Signs the messages it sends (``App(signing_keys=…)``), else None."""
    partitions: Partitions
    """The queues declared with ``App.queue()`` (partitioned ones: their partitions)."""

    def options_for(self, task: str, call: TaskOptions = ...) -> Effective: ...

    def queues(self) -> list[str]: ...

    async def send(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        timeout: float | None = ...,
        result_ttl: float = ...,
        store_result: bool = ...,
        retries: int = ...,
        priority: int = ...,
        delay: float | None = None,
        eta: datetime | None = None,
        job_id: str | None = None,
        unique_for: float | None = ...,
        partition_key: str | int | None = None,
    ) -> Any:
        """``App.send``: enqueue a task by name (returns its ``Job``)."""
        ...

    def job(self, job_id: str) -> Any:
        """``App.job``: a handle on an existing job (a ``Job``)."""
        ...


class EnqueueHooks(Protocol):
    """What ``Task`` and workflows read of ``App.hooks`` (a ``_core/hooks.Hooks``,
    not imported here: it imports ``Context``, which imports this module)."""

    @property
    def enqueue(self) -> tuple[Any, ...]: ...


class TaskHost(AppHandle, Protocol):
    """What ``Task`` and workflows use of their ``App``."""

    @property
    def hooks(self) -> EnqueueHooks: ...

    _routes_version: int

    async def _submit(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        call: TaskOptions,
        when: When | None,
        job_id: str | None = None,
        opts: Effective | None = None,
        hooked: Any = None,  # an ``Enqueue``
        partition_key: str | int | None = None,
    ) -> str: ...
