"""The garbage collector's settings in a worker process of its own (``aioq worker``).

Profiled on a drain of no-op tasks (issue 14, benchmarks/README.md, "Worker CPU and
round trip, 2026-11-29 evening"):

- **Full collections** walked every object the process made at start-up (modules,
  the app, connections, what ``on_worker_start`` returned), ~15 ms each, 7–8 per
  50,000 tasks: 2–5 µs of a no-op's ~30 µs of CPU. ``gc.freeze()`` once the worker
  is ready moves them out of the collector's sight. Nothing is collected first
  (the first read would wait for it): the few start-up cycles that are garbage stay.
- **Young collections** ran every ~50 tasks, ~1.6 µs per task: a read batch of 100
  tasks in flight holds more than the default 700 new objects at once, so each
  batch crossed the threshold, although almost everything it allocates is freed by
  reference counting a moment later. With the threshold at ``YOUNG`` a drain at
  ``-c 100`` runs no collection at all; cyclic garbage waits for at most that many
  more objects (well under a MB).

An ``aioq.Worker`` embedded in another program leaves that program's collector alone.
"""

from __future__ import annotations

import gc

YOUNG = 10_000
"""Allocations (net of deallocations) between two young collections: above what
``-c 100`` holds in flight (~7 objects per running task)."""


def tune() -> None:
    """Freeze what exists now and raise the young generation's threshold."""
    gc.freeze()
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG), *older)
