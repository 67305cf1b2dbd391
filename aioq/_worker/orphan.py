"""A ``-w N`` child stops when its supervisor is gone.

The supervisor forwards SIGTERM/SIGINT to its children, which run in sessions of
their own (a terminal's Ctrl-C reaches them once, through it). A supervisor that
is SIGKILLed (an OOM kill, ``kill -9``, a test harness) forwards nothing: its
children would run on, unseen, under init. So each child watches its parent from
a daemon thread and, once the supervisor is gone, sends itself SIGTERM: the same
graceful stop as a forwarded one (in-flight tasks finish within ``--grace``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger("aioq.worker")

SUPERVISOR_ENV = "AIOQ_SUPERVISOR_PID"
"""Set by the supervisor in each child's environment: its own pid."""
EVERY = 0.5
"""Seconds between two looks at the parent (``os.getppid``: a cheap system call)."""


def watch_supervisor() -> None:
    """In a supervised child: stop this process (SIGTERM) once its parent is no
    longer the supervisor that started it. Does nothing outside ``-w N``."""
    value = os.environ.get(SUPERVISOR_ENV)
    if not value:
        return
    supervisor = int(value)
    stopped = threading.Event()

    def watch() -> None:
        while not stopped.wait(EVERY):
            if os.getppid() != supervisor:
                log.warning(
                    "the supervisor (pid %d) is gone: stopping this worker process", supervisor
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="aioq-supervisor-watch", daemon=True).start()
