"""``aioq worker``: from a command line to a running ``Worker`` (or ``-w N`` of
them): loading the app, options from flags and ``AIOQ_*`` variables, checks,
and the metrics endpoint of a supervisor. Part of the CLI (``cli.py``)."""

from __future__ import annotations

import importlib
import logging
import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable

    from ._worker.worker import Worker
    from .app import App

log = logging.getLogger("aioq")


class CliError(Exception):
    """A problem to report in one line, without a traceback."""


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (or ``module``, taking its ``app``) and return the App.

    The module may also be a file path (``./tasks.py:app``, ``src/proj/tasks.py``):
    it is imported under its dotted name, found by walking up its packages.
    """
    from .app import App

    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        module_name = _module_of_file(module_name)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from None
    if not hasattr(module, attr):
        found = [f"{module_name}.{k}" for k, v in vars(module).items() if isinstance(v, App)]
        where = (
            f"aioq.App objects found: {', '.join(found)} (pass it as "
            f"{found[0].rpartition('.')[0]}:{found[0].rpartition('.')[2]})"
            if found
            else "no aioq.App object in it"
        )
        raise CliError(f"module {module_name!r} has no attribute {attr!r}; {where}")
    obj = getattr(module, attr)
    if not isinstance(obj, App):
        kind = type(obj).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise CliError(f"'{module_name}:{attr}' is {article} {kind}, not an aioq.App")
    return obj


def _module_of_file(path: str) -> str:
    """The dotted module name of a ``.py`` file, with the directory above its
    top package put on ``sys.path``."""
    file = Path(path if path.endswith(".py") else f"{path}.py").resolve()
    if not file.is_file():
        raise CliError(f"no such file: {path!r}")
    parts = [file.stem]
    top = file.parent
    while (top / "__init__.py").is_file():
        parts.insert(0, top.name)
        top = top.parent
    if str(top) not in sys.path:
        sys.path.insert(0, str(top))
    return ".".join(parts)


ENV_DEFAULTS: dict[str, tuple[str, type, object]] = {
    "concurrency": ("AIOQ_CONCURRENCY", int, 100),
    "queues": ("AIOQ_QUEUES", str, None),
    "workers": ("AIOQ_WORKERS", int, 1),
    "threads": ("AIOQ_THREADS", int, None),
    "grace": ("AIOQ_GRACE", float, 30.0),
    "unknown_task_grace": ("AIOQ_UNKNOWN_TASK_GRACE", float, 60.0),
    "loop": ("AIOQ_LOOP", str, "auto"),
}
"""Worker options an environment variable sets when the command line does not."""


def _worker_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill worker options from the environment, then check every one (one
    ``CliError``/``ConfigurationError`` naming the option)."""
    from ._core.options import TaskOptions, validate

    for dest, (var, kind, default) in ENV_DEFAULTS.items():
        if getattr(args, dest) is not None:
            continue
        raw = os.environ.get(var, "").strip()
        try:
            setattr(args, dest, kind(raw) if raw else default)
        except ValueError:
            raise CliError(f"${var}={raw!r} is not a valid {kind.__name__}") from None
    args.app = args.app or args.app_option
    if not args.app:
        raise CliError("which app? give it as module:attribute (or -A module:attribute)")
    if args.workers < 1 or args.concurrency < 1:
        raise CliError("--workers and --concurrency must be at least 1")
    if args.loop not in LOOPS:
        raise CliError(f"--loop must be one of {', '.join(LOOPS)}, got {args.loop!r}")
    if args.threads is not None and args.threads < 1:
        raise CliError("--threads must be at least 1")
    if args.workers > 1 and args.burst:
        raise CliError("--burst runs one process: drop -w/--workers")
    _check_seconds(args)
    for queue in args.queues.split(",") if args.queues else ():
        if queue.strip():
            validate(TaskOptions(queue=queue.strip()))
    return args


def _check_seconds(args: argparse.Namespace) -> None:
    for name in ("grace", "connect_timeout", "unknown_task_grace"):
        value = getattr(args, name)
        if not 0 <= value < math.inf:
            raise CliError(f"--{name.replace('_', '-')} must be >= 0 seconds, got {value}")


def build_worker(args: argparse.Namespace) -> Worker:
    """The ``Worker`` an ``aioq worker`` command line describes (no I/O yet):
    the app loaded, its task modules and ``--include`` imported, checked."""
    from ._worker.worker import Worker

    args = _worker_options(args)
    app = load_app(args.app)
    app.include = list(dict.fromkeys([*app.include, *(args.include or ())]))
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    return Worker(
        app,
        queues=queues,
        concurrency=args.concurrency,
        grace=args.grace,
        connect_timeout=args.connect_timeout,
        name=args.name,
        scheduler=args.scheduler,
        threads=args.threads,
        strict=args.strict,
        burst=args.burst,
        health_port=None if args.health_port is None else args.health_port + _slot(),
        health_host=args.probe_host,
        metrics_port=_child_metrics_port(args.metrics_port),
        unknown_task_grace=args.unknown_task_grace,
    )


def _run_worker(args: argparse.Namespace) -> int:
    from ._worker import stopping

    stopping.stop_while_starting()
    if "AIOQ_SUPERVISOR_PID" in os.environ:  # a -w N child (not imported when alone)
        from ._worker.orphan import watch_supervisor

        watch_supervisor()
    try:
        worker = build_worker(args)
        worker.tune_gc = True  # a process of its own (Worker.tune_gc)
        broker = worker.app.broker

        async def main() -> None:
            await worker.run(handle_signals=True)
            await broker.aclose()

        _serve(main, args.loop)
    except* stopping.StoppedWhileStarting as stopped:  # raw, or out of a task group
        first = stopped.exceptions[0]
        assert isinstance(first, stopping.StoppedWhileStarting)
        name = signal.Signals(first.signum).name
        log.info("received %s while starting: stopped", name)
    return 0


def _merged_metrics(args: argparse.Namespace) -> Callable[[], None]:
    """``-w N --metrics-port P``: the supervisor serves P, merged from its children's."""
    if args.metrics_port is None:
        return lambda: None
    from ._worker.metrics import child_port, serve_merged

    children = [child_port(args.metrics_port, k) for k in range(args.workers)]
    try:
        return serve_merged(args.probe_host, args.metrics_port, children)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on port {args.metrics_port}: {exc}") from None


def _child_metrics_port(port: int | None) -> int | None:
    """Alone: ``--metrics-port``; child k of ``-w N``: the port its parent merges from."""
    if port is None:  # without importing metrics.py or supervisor.py (worker memory)
        return None
    from ._worker.metrics import child_port
    from ._worker.supervisor import SLOT_ENV

    if SLOT_ENV not in os.environ:
        return port
    return child_port(port, _slot())


def _slot() -> int:
    """This process's slot under a ``-w N`` supervisor (0 when alone)."""
    from ._worker.supervisor import SLOT_ENV

    return int(os.environ.get(SLOT_ENV, "0"))


def _worker_command(args: argparse.Namespace, argv: list[str] | None) -> int:
    _worker_options(args)
    if args.reload:
        from ._reload import ReloadError, run_reloading

        build_worker(args)  # fail fast, in one line, before watching anything
        try:
            return run_reloading(args, argv if argv is not None else sys.argv[1:])
        except ReloadError as exc:
            raise CliError(str(exc)) from None
    if args.metrics_port is not None:
        from ._worker.metrics import require

        require()  # before forking anything
    if args.workers > 1:
        from ._worker.supervisor import supervise

        build_worker(args)  # fail fast, in one line, before forking anything
        child = [a for a in (argv if argv is not None else sys.argv[1:])]
        stop = _merged_metrics(args)
        try:
            return supervise([*_without_workers(child), "-w", "1"], args.workers)
        finally:
            stop()
    return _run_worker(args)


def _without_workers(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("-w", "--workers"):
            skip = True
            continue
        if arg.startswith("--workers=") or (arg.startswith("-w") and arg != "-w"):
            continue
        out.append(arg)
    return out


LOOPS = ("auto", "uvloop", "asyncio")
"""``aioq worker --loop``: uvloop when installed (auto), uvloop, or asyncio's own loop."""


def _serve(main: Callable[[], Awaitable[None]], loop: str = "auto") -> None:
    """Run a long-lived service on uvloop when it is installed (``loop="auto"``),
    on uvloop (an error without it), or on asyncio's own loop: then uvloop is not
    even imported, about 2 MB less RSS for 4-18 % more CPU per task
    (benchmarks/README.md, "Worker memory, 2026-11-29 evening")."""
    if loop == "asyncio":
        anyio.run(main)
        return
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if loop == "uvloop":
            raise CliError("--loop uvloop: uvloop is not installed") from None
        anyio.run(main)
    else:
        anyio.run(main, backend_options={"use_uvloop": True})
