"""aioq: an asyncio-native distributed task queue on Redis Streams.

Import everything from here::

    import aioq

    app = aioq.App()

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._core.message import Progress as Progress
from ._version import __version__ as __version__
from .app import App as App
from .canvas import Chain as Chain
from .canvas import Chord as Chord
from .canvas import Group as Group
from .canvas import GroupJob as GroupJob
from .canvas import Signature as Signature
from .canvas import SyncGroupJob as SyncGroupJob
from .canvas import chain as chain
from .canvas import chord as chord
from .canvas import group as group
from .context import Context as Context
from .deadletter import DeadLetter as DeadLetter
from .errors import AioqError as AioqError
from .errors import ArgumentError as ArgumentError
from .errors import BrokerUnavailable as BrokerUnavailable
from .errors import ConfigurationError as ConfigurationError
from .errors import JobAborted as JobAborted
from .errors import MessageTooLarge as MessageTooLarge
from .errors import ResultTimeout as ResultTimeout
from .errors import Retry as Retry
from .errors import SyncCallInEventLoop as SyncCallInEventLoop
from .errors import TaskFailed as TaskFailed
from .events import Event as Event
from .hooks import Enqueue as Enqueue
from .job import Job as Job
from .job import JobInfo as JobInfo
from .job import JobState as JobState
from .job import JobUpdate as JobUpdate
from .job import gather as gather
from .schedules import ScheduleInfo as ScheduleInfo
from .schedules import Schedules as Schedules
from .status import JobSummary as JobSummary
from .status import LevelStatus as LevelStatus
from .status import QueueStatus as QueueStatus
from .status import Status as Status
from .status import WorkerStatus as WorkerStatus
from .sync import SyncJob as SyncJob
from .task import AsyncTask as AsyncTask
from .task import SyncTask as SyncTask
from .task import Task as Task
from .worker import Worker as Worker

if _TYPE_CHECKING:
    from ._worker.scheduler import Scheduler as Scheduler

__all__ = [
    "AioqError",
    "App",
    "ArgumentError",
    "AsyncTask",
    "BrokerUnavailable",
    "Chain",
    "Chord",
    "ConfigurationError",
    "Context",
    "DeadLetter",
    "Enqueue",
    "Event",
    "Group",
    "GroupJob",
    "Job",
    "JobAborted",
    "JobInfo",
    "JobState",
    "JobSummary",
    "JobUpdate",
    "LevelStatus",
    "MessageTooLarge",
    "Progress",
    "QueueStatus",
    "ResultTimeout",
    "Retry",
    "ScheduleInfo",
    "Scheduler",
    "Schedules",
    "Signature",
    "Status",
    "SyncCallInEventLoop",
    "SyncGroupJob",
    "SyncJob",
    "SyncTask",
    "Task",
    "TaskFailed",
    "Worker",
    "WorkerStatus",
    "chain",
    "chord",
    "gather",
    "group",
]


def __getattr__(name: str) -> object:
    # Loaded on first use: a worker of an app without schedules never needs the
    # scheduler's module (issue 14, worker memory).
    if name == "Scheduler":
        from ._worker.scheduler import Scheduler

        return Scheduler
    raise AttributeError(f"module 'aioq' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "Scheduler"})
