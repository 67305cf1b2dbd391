"""``-w N``: N worker processes (each with its own event loop) under one supervisor.

The supervisor restarts a child that dies (a crash, an OOM kill), forwards
SIGTERM/SIGINT to every child so they drain, and exits once all have stopped.
Children are plain ``python -m aioq worker … -w 1`` processes: nothing is
shared between them but Redis.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("aioq.supervisor")

RESTART_DELAY = 1.0


def supervise(child_argv: Sequence[str], processes: int) -> int:
    """Run ``processes`` children with ``child_argv``; returns the exit code."""
    argv = [sys.executable, "-m", "aioq", *child_argv]
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping += 1
        log.info(
            "supervisor received %s: stopping %d worker process(es)",
            signal.Signals(signum).name,
            len(children),
        )
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def spawn(slot: int) -> None:
        # Children ignore the terminal's SIGINT group delivery: the supervisor
        # forwards signals itself, exactly once.
        children[slot] = subprocess.Popen(argv, start_new_session=True)
        log.info("started worker process %d (pid %d)", slot, children[slot].pid)

    for slot in range(processes):
        spawn(slot)
    worst = 0
    while children:
        time.sleep(0.2)
        for slot, proc in list(children.items()):
            code = proc.poll()
            if code is None:
                continue
            del children[slot]
            if stopping:
                worst = max(worst, code if code > 0 else 0)
                continue
            log.warning(
                "worker process %d (pid %d) exited with %s; restarting it in %gs",
                slot,
                proc.pid,
                code,
                RESTART_DELAY,
            )
            time.sleep(RESTART_DELAY)
            if not stopping:
                spawn(slot)
    return worst
