"""``aioq worker APP --reload``: run the worker as a child process and restart it
whenever a Python file under the watched directories changes (development only;
needs ``watchfiles``: ``pip install 'aioq[reload]'``).

The child is the same command line without ``--reload``. A restart stops it as a
first SIGINT does: it stops reading and gets ``--grace`` seconds to finish what
runs (then it is killed, and its messages come back through recovery), so a
small ``--grace`` makes reloads quick.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

log = logging.getLogger("aioq")


class ReloadError(Exception):
    """``--reload`` cannot start (the CLI prints it as its one error line)."""


DEBOUNCE_MS = 400
"""Changes that come this close together cause one restart."""


def run_reloading(args: argparse.Namespace, argv: list[str]) -> int:
    """Watch ``--reload-dir`` (default: the current directory) and (re)start the worker."""
    try:
        import watchfiles
    except ImportError:
        raise ReloadError("--reload needs watchfiles: pip install 'aioq[reload]'") from None
    dirs = [os.path.abspath(d) for d in (args.reload_dir or [os.getcwd()])]
    for directory in dirs:
        if not os.path.isdir(directory):
            raise ReloadError(f"--reload-dir {directory!r} is not a directory")
    child = shlex.join([sys.executable, "-m", "aioq", *without_reload(argv)])

    def restarting(changes: set[tuple[watchfiles.Change, str]]) -> None:
        names = sorted({os.path.relpath(path) for _, path in changes})
        log.info("changed: %s; restarting the worker", ", ".join(names[:5]))

    log.info("watching %s for changes to Python files", ", ".join(dirs))
    watchfiles.run_process(
        *dirs,
        target=child,
        target_type="command",
        callback=restarting,
        watch_filter=watchfiles.PythonFilter(),
        debounce=DEBOUNCE_MS,
        sigint_timeout=int(args.grace) + 5,
    )
    return 0


def without_reload(argv: list[str]) -> list[str]:
    """The command line minus ``--reload`` and ``--reload-dir DIR``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--reload":
            continue
        elif arg == "--reload-dir":
            skip = True
        elif not arg.startswith("--reload-dir="):
            out.append(arg)
    return out
