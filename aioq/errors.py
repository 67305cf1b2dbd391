"""Every error aioq raises, in one tree.

::

    AioqError
    ├── ConfigurationError          bad settings, unknown task name on send
    ├── ArgumentError               a call's arguments do not fit the task (also a TypeError)
    │   └── SyncCallInEventLoop     ``task.delay()`` & co. called inside a running event loop
    ├── BrokerUnavailable           Redis cannot be reached (connect, auth, timeout)
    ├── MessageTooLarge             a payload over ``max_message_bytes``
    ├── TaskFailed                  the task raised; carries the remote error
    ├── JobAborted                  the job was aborted before it finished
    └── ResultTimeout               ``job.result(timeout=…)`` ran out (also a TimeoutError)

Errors never carry pickled exceptions: a remote failure arrives as its type name,
message and formatted traceback.

Control flow, raised *by a task* (not an error of aioq)::

    Retry                           retry this job now, or after ``delay`` seconds
"""

from __future__ import annotations

__all__ = [
    "AioqError",
    "ArgumentError",
    "BrokerUnavailable",
    "ConfigurationError",
    "JobAborted",
    "MessageTooLarge",
    "ResultTimeout",
    "Retry",
    "SyncCallInEventLoop",
    "TaskFailed",
]


class AioqError(Exception):
    """Base class of every error raised by aioq."""


class ConfigurationError(AioqError):
    """The app, a task or a call was configured in a way that cannot work."""


class ArgumentError(AioqError, TypeError, ValueError):
    """A call's arguments do not fit the task: a missing or unexpected argument
    (raised by ``kiq()`` before anything is sent), a value msgpack cannot carry
    (``object()``, an int over 64 bits), or, on the worker, a value that does
    not convert to the parameter's type hint (the job fails with this type).
    It is a ``TypeError`` (and a ``ValueError``), as such errors were before."""


class SyncCallInEventLoop(ConfigurationError):
    """A blocking call made for sync code (``task.delay()``, ``SyncJob.get()``, …)
    was made inside a running event loop, which it would freeze: use the async
    form there (``await task.kiq(...)``, ``await job.result()``)."""


class BrokerUnavailable(AioqError):
    """Redis could not be reached, refused the credentials, or did not answer in time."""


class MessageTooLarge(AioqError):
    """An encoded message is larger than the app's ``max_message_bytes``."""


class TaskFailed(AioqError):
    """The task raised an exception on the worker.

    Attributes:
        type: the remote exception's type name, e.g. ``"ValueError"``.
        message: ``str()`` of the remote exception.
        traceback: the formatted remote traceback (may be empty).
        job_id: the id of the job that failed.
    """

    def __init__(self, type: str, message: str, traceback: str = "", job_id: str = "") -> None:
        self.type = type
        self.message = message
        self.traceback = traceback
        self.job_id = job_id
        super().__init__(f"{type}: {message}" if message else type)


class JobAborted(AioqError):
    """The job was aborted and will not produce a result."""


class ResultTimeout(AioqError, TimeoutError):
    """The job did not finish within the time given to ``Job.result()``."""


class Retry(Exception):
    """Raise inside a task to ask for another attempt.

    ``raise aioq.Retry(delay=30)`` retries after 30 s (default: the task's
    backoff). It counts against the task's ``retries``; once they are used up
    the job fails with this error.
    """

    def __init__(self, message: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay
