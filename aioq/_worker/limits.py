"""Task limits shared by every worker: ``rate_limit`` and ``max_running``.

Both are decided in Redis (admit.lua), so they hold across processes and
hosts. A job that may not start yet is not held in a worker slot and not
polled in a loop: its message goes back to the queue's delayed set, due at
its reserved rate slot, or, for ``max_running``, after a backoff that grows
with each wait (up to ``MAX_WAIT``).
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from .._core.message import Message, pack
from .._transport.types import Admit, Verdict

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._core.registry import TaskDef
    from .._core.signing import Signer
    from .._transport.broker import WorkerBroker
    from .._transport.types import Entry

log = logging.getLogger("aioq.worker")

FIRST_WAIT = 0.05
"""Seconds a job waits the first time its task's ``max_running`` is reached."""
MAX_WAIT = 1.0
"""Longest wait between two checks of ``max_running``."""


class Deferral(NamedTuple):
    """A job that must wait: its next message and how long.

    The wait is relative: the delayed set's due time is computed from the Redis
    clock when the message is put back (retry.lua), never from this host's.
    """

    payload: bytes
    delay_ms: int
    why: str


def limited(task: TaskDef) -> bool:
    return task.rate_limit is not None or task.max_running is not None


class Limits:
    def __init__(self, streams: WorkerBroker, lease_ms: int, signer: Signer | None = None) -> None:
        self.streams = streams
        self.signer = signer
        """Re-signs the messages it puts back (``App(signing_keys=…)``)."""
        self.lease_ms = lease_ms
        self.slots: dict[str, tuple[str, int]] = {}
        """Job id → (task, its max_running), for jobs running here that hold a
        ``max_running`` slot."""
        self._lost: set[str] = set()
        """Jobs whose slot lapsed and could not be taken back (reported once)."""

    async def admit(self, items: Sequence[tuple[Entry, Message, TaskDef]]) -> list[Deferral | None]:
        """For each job: None when it may start now (holding a running slot if
        its task has ``max_running``), else how it waits. Raises connection errors."""
        requests = [
            Admit(
                task.name,
                msg.id,
                task.rate_limit.interval_us if task.rate_limit is not None else 0,
                msg.reserved,
                task.max_running or 0,
                self.lease_ms,
            )
            for _, msg, task in items
        ]
        replies = await self.streams.admit(requests)
        out: list[Deferral | None] = []
        for (_, msg, task), reply in zip(items, replies, strict=True):
            if isinstance(reply, Exception):
                log.warning("limit check of job %s failed (%s); running it", msg.id, reply)
                out.append(None)
            elif reply.verdict == Verdict.START:
                if task.max_running is not None:
                    self.slots[msg.id] = (task.name, task.max_running)
                out.append(None)
            elif reply.verdict == Verdict.WAIT:
                wait_ms = round(reply.wait_us / 1000)
                payload = pack(msgspec.structs.replace(msg, reserved=True), self.signer)
                out.append(Deferral(payload, wait_ms, "rate_limit"))
            else:
                wait = min(MAX_WAIT, FIRST_WAIT * 2.0**msg.waits) * random.uniform(0.5, 1.5)
                payload = pack(msgspec.structs.replace(msg, waits=msg.waits + 1), self.signer)
                out.append(Deferral(payload, round(wait * 1000), "max_running"))
        return out

    async def release(self, job_id: str) -> None:
        """Give up the running slot of a job that ended here (no-op if it has none)."""
        held = self.slots.pop(job_id, None)
        self._lost.discard(job_id)
        if held is not None:
            task, max_running = held
            try:
                await self.streams.running_slots([(task, job_id, max_running)], None)
            except Exception as exc:  # the slot's lease runs out instead
                log.warning("could not free the max_running slot of job %s (%s)", job_id, exc)

    async def renew(self) -> None:
        """Extend the running slots of jobs still running here (from the heartbeat),
        by the Redis clock. A slot that lapsed while this worker stalled is taken
        back if the limit allows; else the job runs on without one (it is not
        stopped: its work is under way) and that is logged."""
        lost = await self.streams.running_slots(
            [(task, job_id, most) for job_id, (task, most) in self.slots.items()], self.lease_ms
        )
        for job_id in lost:
            if job_id in self.slots and job_id not in self._lost:
                self._lost.add(job_id)
                log.warning(
                    "job %s lost its max_running slot of %s (this worker stalled past "
                    "its lease and the limit was reached meanwhile)",
                    job_id,
                    self.slots[job_id][0],
                )
        self._lost.intersection_update(lost)


def describe(d: Deferral, msg: Message) -> str:
    return f"job {msg.id} waits {d.delay_ms} ms ({d.why} of {msg.task})"


__all__ = ["Deferral", "Limits", "describe", "limited"]
