"""Partitioned queues: one logical queue spread over N physical queues.

``app.queue("hot", partitions=8)`` declares the logical queue ``hot`` with the
physical queues ``hot#0`` … ``hot#7``. Each is an ordinary queue with its own
hash tag (``{hot#3}``), so on Redis Cluster each lands in a slot of its own and
its scripts stay single-slot. Everything that stores a message picks one
partition here (``Partitions.pick``); everything that reads or reports a queue
expands the logical name into its partitions (``Partitions.expand``).

Which partition a message gets:

- a key (``partition_key=``, else a unique job's lock key, else a workflow
  job's id, else a schedule's name): CRC32 of the key modulo N, the same in
  every process, so equal keys share a partition (and its order, and its lock);
- no key: round-robin, per process and queue.

Messages, records and locks name the *physical* queue: a retry, a deferral and
a dead letter stay in the partition the message was in. Pure Python, no I/O.
"""

from __future__ import annotations

import itertools
import zlib
from typing import TYPE_CHECKING

from ..errors import ConfigurationError
from .options import check_queue

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["MAX_PARTITIONS", "SEPARATOR", "Partitions", "check_key", "partition_index"]

SEPARATOR = "#"
"""Between a logical queue's name and a partition's number: ``hot#3``."""
MAX_PARTITIONS = 1024
"""Most partitions one queue may have."""


def partition_index(key: str | int, count: int) -> int:
    """The partition of ``key`` among ``count``: CRC32 of its text, modulo ``count``
    (stable across processes and Python versions, unlike ``hash()``)."""
    return zlib.crc32(str(key).encode()) % count


def check_key(key: object) -> None:
    """A partition key must be a str or an int (booleans are not keys)."""
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise ConfigurationError(f"partition_key must be a str or an int, got {key!r}")


class Partitions:
    """The partitioned queues an app declared (``App.partitions``)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._turns: dict[str, Iterator[int]] = {}

    def declare(self, queue: str, count: int) -> None:
        """Make ``queue`` a logical queue of ``count`` partitions (1: a plain queue).

        Raises ``ConfigurationError`` for a bad name or count, or a queue already
        declared with another count (every process must agree on the count)."""
        check_queue(queue)
        if SEPARATOR in queue:
            raise ConfigurationError(
                f"queue name {queue!r}: {SEPARATOR!r} is reserved for partitions ({queue}#0, …)"
            )
        if (
            isinstance(count, bool)
            or not isinstance(count, int)
            or not 1 <= count <= MAX_PARTITIONS
        ):
            raise ConfigurationError(
                f"partitions must be a whole number from 1 to {MAX_PARTITIONS}, got {count!r}"
            )
        known = self._counts.get(queue, 1)
        if queue in self._counts and known != count:
            raise ConfigurationError(
                f"queue {queue!r} is already declared with {known} partition(s), not {count}"
            )
        self._counts[queue] = count
        self._turns.setdefault(queue, itertools.count())

    def declared(self) -> dict[str, int]:
        """Every declared queue → its partition count (1: not partitioned)."""
        return dict(self._counts)

    def count(self, queue: str) -> int:
        """How many partitions ``queue`` has (1 when it is not partitioned)."""
        return self._counts.get(queue, 1)

    def names(self, queue: str) -> list[str]:
        """The physical queues of ``queue``: its partitions, or itself."""
        count = self._counts.get(queue, 1)
        if count == 1:
            return [queue]
        return [f"{queue}{SEPARATOR}{i}" for i in range(count)]

    def expand(self, queues: Iterable[str]) -> list[str]:
        """Every physical queue of ``queues``, in order, each once."""
        return list(dict.fromkeys(name for q in queues for name in self.names(q)))

    def logical(self, name: str) -> str:
        """The logical queue of a physical one (``hot#3`` → ``hot``; a queue that
        is not a partition is its own)."""
        base, sep, index = name.rpartition(SEPARATOR)
        if sep and index.isdigit() and int(index) < self._counts.get(base, 1):
            return base
        return name

    def pick(self, queue: str, key: str | int | None = None) -> str:
        """The physical queue a message for ``queue`` goes to: by ``key`` when given
        (stable), else the next partition in turn. A queue that is not partitioned
        (or a partition named directly, ``hot#3``) is returned as it is."""
        count = self._counts.get(queue, 1)
        if count == 1:
            return queue
        index = partition_index(key, count) if key is not None else next(self._turns[queue]) % count
        return f"{queue}{SEPARATOR}{index}"
