"""``AioqBackend``: Django's task framework (``django.tasks``) on aioq workers.

::

    TASKS = {
        "default": {
            "BACKEND": "aioq.contrib.django.AioqBackend",
            "OPTIONS": {"url": "redis://localhost:6379/0"},  # any App() argument
            # or "OPTIONS": {"app": "mysite.aioq_app:app"}: an App of your own
        }
    }

Each ``@task`` function becomes an aioq task named by its dotted path
(``myapp.tasks.send_email``) when it is defined, in every process that imports
it; a worker runs it once its module is imported there (``aioq worker
aioq.contrib.django.worker:app`` imports each installed app's ``tasks`` module).
``queue_name`` is the aioq queue (Django's ``"default"`` leaves it to the App's
routes and default queue); ``priority`` (-100..100) maps onto aioq's 0..9 (0 and
below → 0, 100 → 9); ``run_after`` is the job's ``eta``.
"""

from __future__ import annotations

import builtins
import inspect
import math
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string

from aioq import App, ConfigurationError, Context, JobInfo, JobState

from ._compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from .db import install

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AioqBackend", "priority_of", "status_of"]

DEFAULT_QUEUE = "default"
"""Django's default ``queue_name``: the job goes where aioq's routing sends it."""

T = TypeVar("T")

_STATUS = {
    JobState.SCHEDULED: TaskResultStatus.READY,
    JobState.QUEUED: TaskResultStatus.READY,
    JobState.RETRYING: TaskResultStatus.READY,  # "ready to be executed again"
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.ABORTED: TaskResultStatus.FAILED,  # Django has no "cancelled"
}


def status_of(state: JobState) -> TaskResultStatus:
    """The Django status of an aioq job state."""
    return _STATUS[state]


def priority_of(priority: int) -> int:
    """Django's priority (-100..100, higher first) as aioq's (0..9, 9 first)."""
    return 0 if priority <= 0 else min(9, math.ceil(priority * 9 / 100))


class _Site:
    """One App per backend configuration in a process, and the Django tasks it runs.

    Django makes a backend object per thread; they all share this."""

    def __init__(self, app: App) -> None:
        self.app = install(app)
        self.tasks: dict[str, Task[Any, Any]] = {}


_sites: dict[tuple[str, str], _Site] = {}
_lock = threading.Lock()


def _site_for(alias: str, options: dict[str, Any]) -> _Site:
    key = (alias, repr(sorted(options.items())))
    with _lock:
        site = _sites.get(key)
        if site is None:
            site = _sites[key] = _Site(_make_app(alias, options))
        return site


def _make_app(alias: str, options: dict[str, Any]) -> App:
    options = dict(options)
    path = options.pop("app", None)
    if path is None:
        try:
            return App(**options)
        except (TypeError, ConfigurationError) as exc:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from exc
    if options:
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS']: give either 'app' or App() arguments, "
            f"not both (got {sorted(options)} with 'app')"
        )
    module, _, attr = str(path).partition(":")
    try:
        app = import_string(f"{module}.{attr or 'app'}")
    except ImportError as exc:
        raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']['app']: {exc}") from exc
    if not isinstance(app, App):
        raise ImproperlyConfigured(
            f"TASKS[{alias!r}]['OPTIONS']['app']: {path!r} is a {type(app).__name__}, "
            "not an aioq.App"
        )
    return app


class AioqBackend(BaseTaskBackend):
    """Runs ``django.tasks`` tasks on aioq workers; results are read back from
    aioq's job records (for ``result_ttl`` after each job ends)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._site = _site_for(alias, self.options)

    @property
    def app(self) -> App:
        """The aioq App this backend sends with (and a worker runs)."""
        return self._site.app

    # -- definition ----------------------------------------------------------

    def validate_task(self, task: Task[Any, Any]) -> None:
        """Django's checks, then the task is registered in the App (at definition)."""
        super().validate_task(task)
        name = task.module_path
        known = self._site.tasks.get(name)
        if known is not None and known.func is task.func:
            return
        self.app.task(name=name)(_runner(task, self.alias))
        self._site.tasks[name] = task

    # -- sending -------------------------------------------------------------

    def enqueue(self, task: Task[Any, T], args: Any, kwargs: Any) -> TaskResult[T]:
        self.validate_task(task)
        _check_arguments(task, args, kwargs)
        job = self.app.send_task(
            task.module_path, list(args), dict(kwargs), **self._send_options(task)
        )
        return self._sent(task, job.id, args, kwargs)

    async def aenqueue(self, task: Task[Any, T], args: Any, kwargs: Any) -> TaskResult[T]:
        self.validate_task(task)
        _check_arguments(task, args, kwargs)
        job = await self.app.send(
            task.module_path, list(args), dict(kwargs), **self._send_options(task)
        )
        return self._sent(task, job.id, args, kwargs)

    def _send_options(self, task: Task[Any, Any]) -> dict[str, Any]:
        eta = task.run_after
        if eta is not None and timezone.is_naive(eta):  # USE_TZ = False
            eta = timezone.make_aware(eta, timezone.get_default_timezone())
        options: dict[str, Any] = {"eta": eta}
        # Django's defaults leave the choice to aioq: the routes, then the App's default.
        if task.queue_name != DEFAULT_QUEUE:
            options["queue"] = task.queue_name
        if task.priority != 0:
            options["priority"] = priority_of(task.priority)
        return options

    def _sent(self, task: Task[Any, T], job_id: str, args: Any, kwargs: Any) -> TaskResult[T]:
        result: TaskResult[T] = TaskResult(
            task=task,
            id=job_id,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    # -- results -------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[Any]:
        """The task's result as its record says now. Raises ``TaskResultDoesNotExist``
        for an id never sent, whose record expired, or that is not a Django task.
        The arguments are not kept by aioq: ``args`` and ``kwargs`` read empty."""
        return self._result(self.app.job_sync(result_id).info())

    async def aget_result(self, result_id: str) -> TaskResult[Any]:
        return self._result(await self.app.job(result_id).info())

    def _result(self, info: JobInfo) -> TaskResult[Any]:
        task = self._task_named(info)
        status = status_of(info.state)
        errors = []
        if info.state is JobState.ABORTED:
            errors.append(TaskError(exception_class_path="aioq.errors.JobAborted", traceback=""))
        elif info.error is not None and status is TaskResultStatus.FAILED:
            path = _exception_path(info.error.type, info.error.traceback)
            errors.append(TaskError(exception_class_path=path, traceback=info.error.traceback))
        result: TaskResult[Any] = TaskResult(
            task=task,
            id=info.id,
            status=status,
            enqueued_at=info.enqueued_at,
            started_at=info.started_at,
            finished_at=info.finished_at,
            last_attempted_at=info.started_at,
            args=[],
            kwargs={},
            backend=self.alias,
            errors=errors,
            worker_ids=[info.worker] * info.attempts if info.worker else [],
        )
        if status is TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", info.result)
        return result

    def _task_named(self, info: JobInfo) -> Task[Any, Any]:
        if info.task is None:
            raise TaskResultDoesNotExist(f"no job {info.id!r} (never sent, or expired)")
        task = self._site.tasks.get(info.task)
        if task is None:
            # A task this process has not imported (Django's own database backend
            # reads results this way too).
            try:
                found = import_string(info.task)
            except ImportError:
                found = None
            if not isinstance(found, Task):
                raise TaskResultDoesNotExist(f"job {info.id!r} is not a Django task")
            task = found
        return task


def _runner(task: Task[Any, Any], alias: str) -> Callable[..., Any]:
    """The aioq task that runs ``task`` on a worker (sync or async, as it is)."""
    func = task.func

    def context(ctx: Context, args: Any, kwargs: Any) -> TaskContext:
        now = timezone.now()
        running: TaskResult[Any] = TaskResult(
            task=task,
            id=ctx.job_id,
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=now,
            finished_at=None,
            last_attempted_at=now,
            args=list(args),
            kwargs=dict(kwargs),
            backend=alias,
            errors=[],
            worker_ids=[ctx.worker_id] * ctx.attempt,
        )
        return TaskContext(task_result=running)

    if inspect.iscoroutinefunction(func):

        async def run_async(ctx: Context, *args: Any, **kwargs: Any) -> Any:
            if task.takes_context:
                return await func(context(ctx, args, kwargs), *args, **kwargs)
            return await func(*args, **kwargs)

        return run_async

    def run(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        if task.takes_context:
            return func(context(ctx, args, kwargs), *args, **kwargs)
        return func(*args, **kwargs)

    return run


def _check_arguments(task: Task[Any, Any], args: Any, kwargs: Any) -> None:
    """A call that cannot fit the function fails here, not on the worker."""
    signature = inspect.signature(task.func)
    if task.takes_context:
        params = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=params)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidTask(f"{task.module_path}: {exc}") from None


def _exception_path(type_name: str, traceback: str) -> str:
    """The dotted path of the exception class a job failed with: the last line of
    its traceback names it with its module (builtins are named alone)."""
    last = traceback.strip().splitlines()[-1] if traceback.strip() else ""
    named = last.partition(":")[0].strip()
    if named.endswith(type_name) and "." in named:
        return named
    if isinstance(getattr(builtins, type_name, None), type):
        return f"builtins.{type_name}"
    return "aioq.errors.TaskFailed"  # the worker's own errors (UnencodableResult, …)
