"""Workflows as data: signatures, canvas nodes, continuations, and what to do next.

A workflow is a tree of nodes (task, chain, group; a chord is a chain whose
first step is a group). Every task node gets its job id when the workflow is
sent, so handles exist before anything runs and follow-up messages have
deterministic ids (their enqueue is deduplicated on that id).

Each message carries its *continuation* (``Cont``): the rest of the enclosing
chain (each step gets the previous result as its first argument) and, inside
a group, the barrier to report to. The functions at the bottom are pure: they
turn "this node finished with value v" into the messages to send and the
barriers to report to. The worker carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = [
    "ChainNode",
    "Cont",
    "GroupNode",
    "Join",
    "Launch",
    "Node",
    "Report",
    "SigData",
    "TaskNode",
    "barriers",
    "complete",
    "downstream",
    "start",
]


class SigData(msgspec.Struct, frozen=True, array_like=True):
    """A task call as data: name, arguments, queue, and per-call options."""

    task: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: str = "default"
    options: dict[str, Any] = {}
    """Per-call overrides as the message carries them (timeout, result_ttl, retries…)."""


class TaskNode(msgspec.Struct, frozen=True, tag="t"):
    sig: SigData
    job_id: str


class ChainNode(msgspec.Struct, frozen=True, tag="c"):
    steps: list[Node]


class GroupNode(msgspec.Struct, frozen=True, tag="g"):
    members: list[Node]
    group_id: str


Node = TaskNode | ChainNode | GroupNode


class Join(msgspec.Struct, frozen=True, array_like=True):
    """Where a group member reports its result: barrier ``barrier``, slot ``index``
    of ``size``; once all are in, the list of results continues with ``outer``."""

    barrier: str
    size: int
    index: int
    outer: Cont


class Cont(msgspec.Struct, frozen=True, array_like=True):
    then: list[Node] = []
    join: Join | None = None
    on_error: SigData | None = None
    """Called with (failed job id, error dict) when a step of this workflow fails."""


@dataclass(frozen=True, slots=True)
class Launch:
    """Send a message: run ``sig`` (with ``prefix`` before its args) as ``job_id``."""

    job_id: str
    sig: SigData
    prefix: list[Any]
    cont: Cont


@dataclass(frozen=True, slots=True)
class Report:
    """Record a group member's result in its barrier."""

    join: Join
    value: Any


Action = Launch | Report


def start(node: Node, prefix: list[Any], cont: Cont) -> list[Action]:
    """What to send to start ``node`` with ``prefix`` as its leading arguments."""
    if isinstance(node, TaskNode):
        return [Launch(node.job_id, node.sig, prefix, cont)]
    if isinstance(node, ChainNode):
        first, *rest = node.steps
        return start(first, prefix, Cont([*rest, *cont.then], cont.join, cont.on_error))
    size = len(node.members)
    actions: list[Action] = []
    for index, member in enumerate(node.members):
        join = Join(barrier=node.group_id, size=size, index=index, outer=cont)
        actions.extend(start(member, list(prefix), Cont(join=join, on_error=cont.on_error)))
    return actions


def complete(value: Any, cont: Cont) -> list[Action]:
    """What follows when the node that ran under ``cont`` finished with ``value``."""
    if cont.then:
        first, *rest = cont.then
        return start(first, [value], Cont(rest, cont.join, cont.on_error))
    if cont.join is not None:
        return [Report(cont.join, value)]
    return []


def handles(node: Node) -> list[str]:
    """Job ids of every task node of ``node``, in order."""
    if isinstance(node, TaskNode):
        return [node.job_id]
    children = node.steps if isinstance(node, ChainNode) else node.members
    return [job_id for child in children for job_id in handles(child)]


def downstream(cont: Cont) -> list[str]:
    """Job ids that will never run when the node under ``cont`` fails."""
    ids = [job_id for node in cont.then for job_id in handles(node)]
    if cont.join is not None:
        ids.extend(downstream(cont.join.outer))
    return ids


def barriers(cont: Cont) -> list[str]:
    """Group barriers the node under ``cont`` (and the groups around it) would
    report to: closed when the workflow ends at that node."""
    found: list[str] = []
    join = cont.join
    while join is not None:
        found.append(join.barrier)
        join = join.outer.join
    return found
