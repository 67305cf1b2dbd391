"""``-w N``: N worker processes (each with its own event loop) under one supervisor.

The supervisor restarts a child that dies (a crash, an OOM kill), forwards
SIGTERM/SIGINT to every child so they drain, and exits once all have stopped.
A child that fails right at start twice in a row (``--strict`` refusing an
evicting Redis, a bad setting) is not restarted in a loop: the supervisor stops
every child and exits with that child's code.
Children are plain ``python -m aioq worker … -w 1`` processes: nothing is
shared between them but Redis. Each learns its slot (0…N-1) from ``AIOQ_WORKER_SLOT``
(child k serves ``--health-port`` + k). A child whose supervisor is gone (SIGKILLed:
it forwards nothing) stops itself gracefully (``orphan.py``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from .orphan import SUPERVISOR_ENV

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("aioq.supervisor")

RESTART_DELAY = 1.0
SLOT_ENV = "AIOQ_WORKER_SLOT"
START_FAILURE = 10.0
"""A child exiting non-zero within this many seconds of its start failed to start."""


def supervise(child_argv: Sequence[str], processes: int) -> int:
    """Run ``processes`` children with ``child_argv``; returns the exit code."""
    supervisor = _Supervisor([sys.executable, "-m", "aioq", *child_argv])
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    for slot in range(processes):
        supervisor.spawn(slot)
    while supervisor.children:
        time.sleep(0.2)
        for slot, proc in list(supervisor.children.items()):
            code = proc.poll()
            if code is not None:
                del supervisor.children[slot]
                supervisor.exited(slot, proc, code)
    return supervisor.worst


class _Supervisor:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = 0
        self.worst = 0
        self._started: dict[int, float] = {}
        self._failed_starts: dict[int, int] = {}

    def spawn(self, slot: int) -> None:
        # Children ignore the terminal's SIGINT group delivery: the supervisor
        # forwards signals itself, exactly once.
        env = {**os.environ, SLOT_ENV: str(slot), SUPERVISOR_ENV: str(os.getpid())}
        self.children[slot] = subprocess.Popen(self.argv, start_new_session=True, env=env)
        self._started[slot] = time.monotonic()
        log.info("started worker process %d (pid %d)", slot, self.children[slot].pid)

    def stop_all(self, signum: int) -> None:
        self.stopping += 1
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    def on_signal(self, signum: int, _frame: object) -> None:
        log.info(
            "supervisor received %s: stopping %d worker process(es)",
            signal.Signals(signum).name,
            len(self.children),
        )
        self.stop_all(signum)

    def exited(self, slot: int, proc: subprocess.Popen[bytes], code: int) -> None:
        """A child ended: restart it, unless stopping or it cannot start at all."""
        if self.stopping:
            self.worst = max(self.worst, code if code > 0 else 0)
            return
        quick = code > 0 and time.monotonic() - self._started[slot] < START_FAILURE
        self._failed_starts[slot] = self._failed_starts.get(slot, 0) + 1 if quick else 0
        if self._failed_starts[slot] >= 2:
            log.error(
                "worker process %d failed to start twice (exit %s; see its error above); stopping",
                slot,
                code,
            )
            self.worst = max(self.worst, code if code > 0 else 1)
            self.stop_all(signal.SIGTERM)
            return
        log.warning(
            "worker process %d (pid %d) exited with %s; restarting it in %gs",
            slot,
            proc.pid,
            code,
            RESTART_DELAY,
        )
        time.sleep(RESTART_DELAY)
        if not self.stopping:
            self.spawn(slot)
