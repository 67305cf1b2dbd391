"""``App.send`` and the one path every call takes to Redis (``_submit``): options
resolved and checked, the message built, enqueue hooks run, the record and the
message written (plain, delayed or unique)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import msgspec

from ._core.canvas import SigData
from ._core.message import new_message, now_ms, unique_key, validate_job_id
from ._core.options import Effective, TaskOptions, make_when, validate, wire
from ._core.partitions import check_key
from ._transport.types import NewJob
from .canvas import Signature
from .hooks import submit_hooked
from .job import Job

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from ._core.hooks import Enqueue, Hooks
    from ._core.host import TaskHost
    from ._core.options import When
    from ._core.partitions import Partitions
    from ._core.registry import Registry
    from ._core.signing import Signer
    from ._transport.broker import Broker

__all__ = ["Sending"]

_UNSET: Any = msgspec.UNSET


class Sending:
    """The sending part of ``App`` (a base class of it)."""

    registry: Registry
    broker: Broker
    hooks: Hooks
    max_message_bytes: int
    signer: Signer | None
    partitions: Partitions

    options_for: Callable[..., Effective]  # App's
    placement: Callable[..., tuple[str, int]]  # App's

    @property
    def _host(self) -> TaskHost:
        return cast("TaskHost", self)  # an App

    async def send(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        timeout: float | None = _UNSET,
        result_ttl: float = _UNSET,
        store_result: bool = _UNSET,
        retries: int = _UNSET,
        priority: int = _UNSET,
        delay: float | None = None,
        eta: datetime | None = None,
        job_id: str | None = None,
        unique_for: float | None = _UNSET,
        partition_key: str | int | None = None,
    ) -> Job[Any]:
        """Enqueue a task by name, without importing it (Celery's ``send_task``).

        The queue and priority come from the call, else the task's own options
        when it is registered in this process, else the routing rules, else the
        defaults. Arguments are checked against the task's type hints on the
        worker: a mismatch fails the job and dead-letters the message.
        ``partition_key`` picks the partition of a partitioned queue
        (``App.queue``): calls with equal keys share one.
        """
        if partition_key is not None:
            check_key(partition_key)
        call = validate(
            TaskOptions(
                queue=_UNSET if queue is None else queue,
                timeout=timeout,
                result_ttl=result_ttl,
                store_result=store_result,
                retries=retries,
                priority=priority,
                unique_for=unique_for,
            )
        )
        when = make_when(delay, eta)
        job_id = await self._submit(
            name, args, dict(kwargs or {}), call, when, job_id, partition_key=partition_key
        )
        local = self.registry.get(name)
        return Job(self._host, job_id, local.return_type if local is not None else Any)

    async def _submit(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        call: TaskOptions,
        when: When | None,
        job_id: str | None = None,
        opts: Effective | None = None,
        hooked: Enqueue | None = None,
        partition_key: str | int | None = None,
    ) -> str:
        """Build, check and write one call: its record, then the message to its
        stream or delayed set (``opts``: the call's options, already resolved).

        Returns the job id: with ``job_id`` or ``unique_for`` set and a
        matching job still pending, that job's id (nothing is sent).
        """
        if opts is None:
            opts = self.options_for(name, call)
        if hooked is None and self.hooks.enqueue:  # through them, back here with `hooked`
            return await submit_hooked(
                self._host, name, args, kwargs, call, when, job_id, opts, partition_key
            )
        local = self.registry.get(name)
        if job_id is not None:
            validate_job_id(job_id)
            lock: str | None = job_id
        elif opts.unique_for is not None:
            lock = unique_key(name, args, kwargs)
        else:
            lock = None
        # A partitioned queue: the call's key, else its lock's (so a unique job's
        # lock is in the same partition whoever sends it: uniqueness stays global),
        # else the next partition in turn. The message names the partition.
        queue = self.partitions.pick(
            opts.queue, partition_key if partition_key is not None else lock
        )
        level = opts.priority
        enqueued = now_ms()
        job_id, payload = new_message(
            name,
            queue,
            args,
            kwargs,
            **(wire(call) | {"priority": level}),
            max_bytes=self.max_message_bytes,
            signer=self.signer,
            job_id=job_id if hooked is None else hooked.job_id,
            unique=lock,
            enqueued_ms=enqueued,
            names=local.positional_names if local is not None else (),
            headers=None if hooked is None else hooked.checked_headers(),
        )
        ttl_ms = int(opts.result_ttl * 1000)
        job = NewJob(job_id, name, queue, level, payload, enqueued, ttl_ms, lock)
        if lock is not None:
            # an explicit id stays taken while its result is kept; unique_for is a bound
            hold = opts.result_ttl if lock == job_id or opts.unique_for is None else opts.unique_for
            return await self.broker.enqueue_unique(job, when, int(hold * 1000))
        if when is None:
            await self.broker.enqueue(job)
        else:
            await self.broker.enqueue_delayed(job, when)
        return job_id

    def signature(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
    ) -> Signature[Any]:
        """A signature of a task by name, without importing it (for workflows)."""
        local = self.registry.get(name)
        placed, priority = self.placement(name)
        options = {"priority": priority} if priority else {}
        data = SigData(name, list(args), dict(kwargs or {}), queue or placed, options)
        return Signature(self._host, data, local.return_type if local is not None else Any)

    def job(self, job_id: str) -> Job[Any]:
        """A handle on an existing job, from its id (works in any process)."""
        return Job(self._host, job_id)
