"""What the worker's helpers (``health``, ``metrics``, ``presence``,
``stopping``) see of a ``Worker``: a Protocol, so they never import
``worker.py``, which imports them — no import cycle, not even a type-only one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import anyio

    from .._transport.broker import WorkerBroker
    from .dispatch import Dispatcher
    from .host import WorkerHost
    from .lease import Lease
    from .tally import Tally


class WorkerView(Protocol):
    app: WorkerHost
    queues: list[str]
    concurrency: int
    grace: float
    ready: anyio.Event
    health_host: str
    health_port: int | None
    metrics_port: int | None
    tally: Tally
    read_failing: bool
    _dispatcher: Dispatcher | None
    _lease: Lease

    @property
    def running(self) -> int: ...

    @property
    def stopping(self) -> bool: ...

    @property
    def streams(self) -> WorkerBroker: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...
