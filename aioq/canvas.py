"""Workflows: ``chain``, ``group``, ``chord`` of task signatures.

    job = await chain(add.s(2, 2), mul.s(10), mul.s(3)).kiq()   # 120
    job = await (add.s(2, 2) | mul.s(10)).kiq()
    g = await group(add.s(i, i) for i in range(100)).kiq()      # GroupJob
    j = await chord((add.s(i, i) for i in range(10)), tsum.s()).kiq()

Each chain step gets the previous result as its first argument; a step after a
group gets the list of the members' results. The handle of a chain is its last
step's job, of a chord its callback's, of a group a ``GroupJob``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import msgspec

from ._core.canvas import ChainNode, Cont, GroupNode, Launch, Node, SigData, TaskNode, start
from ._core.message import launch_message, now_ms
from ._core.options import TaskOptions, unwire, validate, wire
from ._transport.types import NewJob
from .errors import ConfigurationError
from .hooks import launch_hooked
from .job import Job
from .sync import SyncJob, call

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Self

    from ._core.host import TaskHost

__all__ = [
    "Chain",
    "Chord",
    "Group",
    "GroupJob",
    "Signature",
    "SyncGroupJob",
    "chain",
    "chord",
    "group",
]

R = TypeVar("R", covariant=True)
_UNSET: Any = msgspec.UNSET


class _Canvas:
    """What chain, group and chord are made of."""

    app: TaskHost
    on_error_sig: SigData | None = None

    def on_error(self, handler: Signature[Any]) -> Self:
        """Run ``handler`` with ``(failed_job_id, error)`` — ``error`` a dict of
        ``type``, ``message``, ``traceback`` — if any step of this workflow fails."""
        self.on_error_sig = handler.data
        return self

    def _build(self) -> tuple[Node, Any]:
        """The node tree with fresh job ids, and the handle of its result."""
        raise NotImplementedError

    def __or__(self, other: _Canvas) -> Chain:
        return chain(self, other)

    def delay(self) -> Any:
        """``kiq()`` from sync code (Celery's ``workflow.delay()``): a ``SyncJob``
        of the last step, or a ``SyncGroupJob`` when the workflow ends in a group."""
        return _sync_handle(call(self.app.broker, self.kiq, "`await workflow.kiq()`"))

    async def kiq(self) -> Any:
        """Send the workflow; returns its handle once every first message is in Redis.

        Every job of the workflow gets its record now (``queued``), so any of them,
        the handle included, can be aborted before it starts; the later steps'
        messages are sent by the workers as the earlier ones end.
        """
        node, handle = self._build()
        root = Cont(on_error=self.on_error_sig)
        launches = [a for a in start(node, [], root) if isinstance(a, Launch)]
        if self.app.hooks.enqueue:  # each first message through them, sent together
            await launch_hooked(self.app.hooks.enqueue, launches, lambda f: self._send(node, f))
        else:
            await self._send(node, {a.job_id: (a, None) for a in launches})
        return handle

    async def _send(
        self, node: Node, first: dict[str, tuple[Launch, dict[str, str] | None]]
    ) -> None:
        """Write every job's record and the first messages (``first``: by job id,
        the launch and its headers), in one pipeline."""
        limit = self.app.max_message_bytes
        signer = self.app.signer
        # A job of a partitioned queue goes to the partition of its id: the same
        # one the worker that sends a later step picks (flow.py), so its record
        # names the partition its message will be in.
        pick = self.app.partitions.pick
        payloads = {
            job_id: launch_message(a, limit, h, signer, pick(a.sig.queue, job_id))
            for job_id, (a, h) in first.items()
        }
        enqueued = now_ms()
        jobs = []
        for task in _task_nodes(node):
            launch = first.get(task.job_id)
            sig = task.sig if launch is None else launch[0].sig
            opts = self.app.options_for(sig.task, unwire(sig.options, sig.queue))
            jobs.append(
                NewJob(
                    task.job_id,
                    sig.task,
                    pick(sig.queue, task.job_id),
                    sig.options.get("priority", 0),
                    payloads.get(task.job_id),
                    enqueued,
                    int(opts.result_ttl * 1000),
                )
            )
        await self.app.broker.enqueue_many(jobs)


class Signature(_Canvas, Generic[R]):
    """A task call as data (``task.s(...)`` or ``app.signature(name, ...)``), bound to
    an app. ``sig.data`` is a msgspec Struct: build it in one process, send it in
    another."""

    __slots__ = ("app", "data", "return_type")

    def __init__(self, app: TaskHost, data: SigData, return_type: Any = Any) -> None:
        self.app = app
        self.data = data
        self.return_type = return_type

    def __repr__(self) -> str:
        return f"<Signature {self.data.task}{tuple(self.data.args)!r}>"

    def with_options(
        self,
        *,
        queue: str = _UNSET,
        timeout: float | None = _UNSET,
        result_ttl: float = _UNSET,
        retries: int = _UNSET,
        priority: int = _UNSET,
    ) -> Signature[R]:
        """A copy with these per-call options."""
        over = validate(
            TaskOptions(
                queue=queue,
                timeout=timeout,
                result_ttl=result_ttl,
                retries=retries,
                priority=priority,
            )
        )
        options = {**self.data.options, **{k: v for k, v in wire(over).items() if v is not None}}
        data = msgspec.structs.replace(
            self.data, options=options, queue=queue if isinstance(queue, str) else self.data.queue
        )
        return Signature(self.app, data, self.return_type)

    def _build(self) -> tuple[Node, Any]:
        job_id = uuid.uuid4().hex
        return TaskNode(self.data, job_id), Job(self.app, job_id, self.return_type)

    async def kiq(self) -> Job[R]:
        handle: Job[R] = await super().kiq()
        return handle

    def delay(self) -> SyncJob[R]:
        """``kiq()`` from sync code (see ``Task.delay``): returns a ``SyncJob``."""
        return SyncJob(call(self.app.broker, self.kiq, "`await sig.kiq()`"))


class Chain(_Canvas):
    """Steps run one after another; each gets the previous result first."""

    def __init__(self, steps: list[_Canvas]) -> None:
        if not steps:
            raise ConfigurationError("a chain needs at least one step")
        self.steps = steps
        self.app = steps[0].app

    def _build(self) -> tuple[Node, Any]:
        built = [step._build() for step in self.steps]
        for (_, before), (_, after) in zip(built, built[1:], strict=False):
            first = after
            while first.parent is not None:  # the earliest handle of a nested step
                first = first.parent
            first.parent = before
        return ChainNode([node for node, _ in built]), built[-1][1]

    def __or__(self, other: _Canvas) -> Chain:
        return Chain([*self.steps, other])

    def __call__(self) -> Any:
        """``chain(...)()`` / ``group(...)()``, as Celery writes it: ``delay()``."""
        return self.delay()


class Group(_Canvas):
    """Members run in parallel; the group's result is the list of theirs, in order."""

    def __init__(self, members: list[_Canvas]) -> None:
        if not members:
            raise ConfigurationError("a group needs at least one member")
        self.members = members
        self.app = members[0].app

    def _build(self) -> tuple[Node, Any]:
        built = [member._build() for member in self.members]
        node = GroupNode([n for n, _ in built], uuid.uuid4().hex)
        return node, GroupJob(self.app, [h for _, h in built])

    def __call__(self) -> Any:
        """``chain(...)()`` / ``group(...)()``, as Celery writes it: ``delay()``."""
        return self.delay()

    async def kiq(self) -> GroupJob:
        handle: GroupJob = await super().kiq()
        return handle


class Chord(Chain):
    """A group, then a callback that gets the list of the members' results."""

    def __init__(self, header: Group, body: _Canvas) -> None:
        super().__init__([header, body])


class GroupJob:
    """The handle of a group: ``jobs`` are its members' handles, in order."""

    def __init__(self, app: TaskHost, jobs: list[Any]) -> None:
        self.app = app
        self.jobs = jobs
        self.parent: Any = None
        """The handle of the step before this group in a chain (see ``Job.parent``)."""

    def __repr__(self) -> str:
        return f"GroupJob({len(self.jobs)} members)"

    async def result(self, timeout: float | None = None) -> list[Any]:
        """Every member's result, in order (raises the first failure)."""
        return list(await asyncio.gather(*(j.result(timeout) for j in self.jobs)))

    async def states(self) -> list[Any]:
        """Every member's state, in order (a nested group gives a list)."""
        return list(
            await asyncio.gather(
                *(j.states() if isinstance(j, GroupJob) else j.state() for j in self.jobs)
            )
        )


def _task_nodes(node: Node) -> list[TaskNode]:
    """Every task of a workflow, in order."""
    if isinstance(node, TaskNode):
        return [node]
    children = node.steps if isinstance(node, ChainNode) else node.members
    return [task for child in children for task in _task_nodes(child)]


def chain(*steps: _Canvas, on_error: Signature[Any] | None = None) -> Chain:
    """Run ``steps`` one after another, each getting the previous result first."""
    flat: list[_Canvas] = []
    for step in steps:
        flat.extend(step.steps if type(step) is Chain else [step])
    made = Chain(flat)
    return made.on_error(on_error) if on_error is not None else made


@overload
def group(members: Iterable[_Canvas], /, *, on_error: Signature[Any] | None = None) -> Group: ...
@overload
def group(*members: _Canvas, on_error: Signature[Any] | None = None) -> Group: ...
def group(*members: Any, on_error: Signature[Any] | None = None) -> Group:
    """Run ``members`` in parallel: ``group(a, b, c)`` (Celery's form) or
    ``group([a, b, c])``, ``group(s for s in ...)``."""
    if len(members) == 1 and not isinstance(members[0], _Canvas):
        try:
            members = tuple(members[0])
        except TypeError:
            pass  # not iterable: reported below as a bad member
    for member in members:
        if not isinstance(member, _Canvas):
            hint = (
                f"pass {member.name.rpartition('.')[2]}.s(...) (a signature), not the task"
                if hasattr(member, "s") and hasattr(member, "name")
                else "pass signatures (task.s(...)) or workflows"
            )
            raise ConfigurationError(
                f"group members must be canvases: {hint}; got {type(member).__name__}"
            )
    made = Group(list(members))
    return made.on_error(on_error) if on_error is not None else made


def chord(
    header: Iterable[_Canvas] | Group, body: _Canvas, on_error: Signature[Any] | None = None
) -> Chord:
    """Run ``header`` in parallel, then ``body`` with the list of their results."""
    made = Chord(header if isinstance(header, Group) else group(header), body)
    return made.on_error(on_error) if on_error is not None else made


class SyncGroupJob:
    """The sync handle of a group (``group(...).delay()``): ``jobs`` are its
    members' sync handles, in order."""

    def __init__(self, group: GroupJob) -> None:
        self.group = group
        """The async handle on the same group."""
        self.jobs: list[Any] = [_sync_handle(j) for j in group.jobs]

    def __repr__(self) -> str:
        return f"SyncGroupJob({len(self.jobs)} members)"

    def get(self, timeout: float | None = None) -> list[Any]:
        """Every member's result, in order (raises the first failure)."""
        return call(
            self.group.app.broker,
            lambda: self.group.result(timeout),
            "`await group_job.result()`",
        )

    def ready(self) -> bool:
        """Whether every member has ended."""
        return all(j.ready() for j in self.jobs)


def _sync_handle(handle: Any) -> Any:
    return SyncGroupJob(handle) if isinstance(handle, GroupJob) else SyncJob(handle)
