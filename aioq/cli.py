"""The ``aioq`` command line.

aioq worker myapp.tasks:app [-Q default,math] [-c 100] [--threads N] [-w 1] [--scheduler]
            [--strict] [--log-level info]
            [--health-port 8081] [--metrics-port 9100]
aioq exporter myapp.tasks:app [--port 9100]
aioq scheduler myapp.tasks:app
aioq schedule list myapp.tasks:app
aioq status|workers|jobs|job|purge myapp.tasks:app …   (see docs/operations.md)
aioq --version
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

import anyio

from . import _logfmt
from ._version import __version__
from .errors import BrokerUnavailable, ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .app import App

log = logging.getLogger("aioq")


class CliError(Exception):
    """A problem to report in one line, without a traceback."""


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (or ``module``, taking its ``app``) and return the App."""
    from .app import App

    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from None
    obj = getattr(module, attr or "app", None)
    if not isinstance(obj, App):
        raise CliError(f"{spec!r} is not an aioq.App (got {type(obj).__name__})")
    return obj


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioq", description="aioq task queue")
    parser.add_argument("--version", action="version", version=f"aioq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a worker")
    w.add_argument("app", help="the App to serve, as module:attribute (e.g. myapp.tasks:app)")
    w.add_argument(
        "-Q",
        "--queues",
        help="comma-separated queues (default: every queue the "
        "app's tasks name, plus its default queue)",
    )
    w.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=100,
        help="tasks run at once per process (default 100)",
    )
    w.add_argument(
        "--threads",
        type=int,
        default=None,
        help="sync tasks run at once per process, each in a thread (default: 4 per CPU "
        "core, at most -c); more wait for a thread while holding their slot",
    )
    w.add_argument(
        "-w",
        "--workers",
        type=int,
        default=1,
        help="worker processes, each with its own event loop (default 1)",
    )
    w.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds in-flight tasks get to finish on SIGTERM (default 30)",
    )
    w.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying an unreachable Redis at start (default 30)",
    )
    w.add_argument(
        "--log-level",
        default="info",
        choices=LEVELS,
        help="info (default) logs a line per succeeded task; warning keeps only "
        "failures, retries and worker events",
    )
    w.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one object per line; lines logged inside a task carry its "
        "job_id, task, queue and attempt",
    )
    w.add_argument(
        "--scheduler",
        action="store_true",
        help="also send the app's periodic schedules (safe in any number of workers: "
        "each tick is sent once)",
    )
    w.add_argument(
        "--strict",
        action="store_true",
        help="refuse to start on a Redis that may lose data silently (a maxmemory-policy "
        "other than noeviction); without it a warning is logged",
    )
    w.add_argument(
        "--health-port",
        type=int,
        default=None,
        help="serve /livez and /readyz on this port (of --probe-host); with -w N, "
        "process k of N serves port+k",
    )
    w.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus /metrics on this port (needs the aioq[metrics] extra)",
    )
    w.add_argument(
        "--probe-host",
        default="127.0.0.1",
        help="address the health and metrics endpoints bind (default 127.0.0.1)",
    )
    w.add_argument("--name", help=argparse.SUPPRESS)

    s = sub.add_parser("scheduler", help="run the app's periodic schedules (no tasks)")
    s.add_argument("app", help="the App whose schedules to run, as module:attribute")
    s.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying an unreachable Redis at start (default 30)",
    )
    s.add_argument("--log-level", default="info", choices=LEVELS)
    s.add_argument("--log-format", default="text", choices=["text", "json"])

    sl = sub.add_parser("schedule", help="show the app's schedules: next and last run")
    sl.add_argument("action", choices=["list"])
    sl.add_argument("app", help="the App, as module:attribute")
    sl.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error", "critical"]
    )

    ex = sub.add_parser(
        "exporter", help="serve the queue gauges on /metrics without running a worker"
    )
    ex.add_argument("app", help="the App, as module:attribute")
    ex.add_argument("--port", type=int, default=9100, help="port (default 9100)")
    ex.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ex.add_argument("-Q", "--queues", help="comma-separated queues (default: all known)")
    ex.add_argument("--log-level", default="info", choices=LEVELS)
    ex.add_argument("--log-format", default="text", choices=["text", "json"])

    d = sub.add_parser("dead", help="list, retry or purge dead letters")
    d.add_argument("action", choices=["list", "retry", "purge"])
    d.add_argument("ids", nargs="*", help="dead-letter ids to retry (see `aioq dead list`)")
    d.add_argument(
        "--app",
        help="module:attribute of your App (for its Redis URL and "
        "prefix); default: $AIOQ_REDIS_URL with --prefix",
    )
    d.add_argument("--prefix", default="aioq", help="key prefix when --app is not given")
    d.add_argument("-Q", "--queue", help="queue (default: every queue; required for retry)")
    d.add_argument("--all", action="store_true", help="with retry: every dead letter of -Q")
    d.add_argument("--limit", type=int, default=100, help="with list: at most this many")
    d.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error", "critical"]
    )
    _inspection(sub)
    return parser


LEVELS = ["debug", "info", "warning", "error", "critical"]


def _inspection(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``aioq status|workers|jobs|job|purge``."""

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("app", help="the App, as module:attribute")
        p.add_argument("--log-level", default="warning", choices=LEVELS)
        return p

    st = command("status", "queues (ready, scheduled, running, retrying, dead) and live workers")
    st.add_argument("-Q", "--queues", help="comma-separated queues (default: all known)")
    st.add_argument("--json", action="store_true", help="print aioq.Status as JSON")
    st.add_argument(
        "--watch",
        nargs="?",
        const=2.0,
        type=float,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )
    wk = command("workers", "live workers; exits 1 when none is alive")
    wk.add_argument("--json", action="store_true")
    jb = command("jobs", "list running, queued, scheduled, retrying or failed jobs")
    jb.add_argument(
        "--state", required=True, choices=["running", "queued", "scheduled", "retrying", "failed"]
    )
    jb.add_argument("-Q", "--queue", help="one queue (default: all known)")
    jb.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    jb.add_argument("--json", action="store_true")
    one = command("job", "everything about one job")
    one.add_argument("id", help="the job id")
    one.add_argument("--json", action="store_true")
    pg = command("purge", "drop a queue's ready messages no worker has taken")
    pg.add_argument("-Q", "--queue", required=True)
    pg.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _run_worker(args: argparse.Namespace) -> int:
    from ._worker.worker import Worker

    app = load_app(args.app)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    worker = Worker(
        app,
        queues=queues,
        concurrency=args.concurrency,
        grace=args.grace,
        connect_timeout=args.connect_timeout,
        name=args.name,
        scheduler=args.scheduler,
        threads=args.threads,
        strict=args.strict,
        health_port=None if args.health_port is None else args.health_port + _slot(),
        health_host=args.probe_host,
        metrics_port=_child_metrics_port(args.metrics_port),
    )

    async def main() -> None:
        await worker.run(handle_signals=True)
        await app.aclose()

    try:
        import uvloop  # noqa: F401
    except ImportError:
        anyio.run(main)
    else:
        anyio.run(main, backend_options={"use_uvloop": True})
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
    from ._worker.metrics import child_port
    from ._worker.supervisor import SLOT_ENV

    if port is None or SLOT_ENV not in os.environ:
        return port
    return child_port(port, _slot())


def _slot() -> int:
    """This process's slot under a ``-w N`` supervisor (0 when alone)."""
    from ._worker.supervisor import SLOT_ENV

    return int(os.environ.get(SLOT_ENV, "0"))


def _run_scheduler(args: argparse.Namespace) -> int:
    from ._worker.scheduler import Scheduler

    app = load_app(args.app)
    try:
        scheduler = Scheduler(app, connect_timeout=args.connect_timeout)
    except (ConfigurationError, TypeError) as exc:
        raise CliError(f"a schedule cannot be sent: {exc}") from None

    async def main() -> None:
        await scheduler.run(handle_signals=True)
        await app.aclose()

    _serve(main)
    return 0


def _serve(main: Callable[[], Awaitable[None]]) -> None:
    """Run a long-lived service on uvloop when it is installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        anyio.run(main)
    else:
        anyio.run(main, backend_options={"use_uvloop": True})


def _run_exporter(args: argparse.Namespace) -> int:
    from ._worker.metrics import Exposition

    app = load_app(args.app)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    exposition = Exposition(app, None, queues)

    async def main() -> None:
        async with exposition.serving(args.host, args.port):
            log.info("serving queue gauges on http://%s:%d/metrics", args.host, args.port)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    break
        await app.aclose()

    try:
        _serve(main)
    except OSError as exc:
        raise CliError(f"cannot serve on {args.host}:{args.port}: {exc}") from None
    return 0


def _schedule_list(args: argparse.Namespace) -> int:
    from ._transport.connection import broker_errors
    from ._worker.scheduler import Row, overview

    app = load_app(args.app)

    async def run() -> list[Row]:
        try:
            async with broker_errors(app.url):
                return await overview(app, app._transport.redis)
        finally:
            await app.aclose()

    rows = anyio.run(run)
    header = Row("NAME", "TASK", "SPEC", "QUEUE", "NEXT RUN", "LAST RUN", "LAST JOB")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows)} schedule(s)", file=sys.stderr)
    return 0


def _dead(args: argparse.Namespace) -> int:
    from .app import App

    app = load_app(args.app) if args.app else App(prefix=args.prefix)

    async def run() -> int:
        try:
            if args.action == "list":
                letters = await app.dead_letters(args.queue, limit=args.limit)
                for d in letters:
                    when = d.dead_at.isoformat(timespec="seconds") if d.dead_at else "-"
                    print(
                        f"{d.queue}\t{d.id}\t{when}\t{d.task or '-'}\t{d.job_id or '-'}\t{d.reason}"
                    )
                print(f"{len(letters)} dead letter(s)", file=sys.stderr)
            elif args.action == "retry":
                if not args.queue or (not args.ids and not args.all):
                    raise CliError("retry needs -Q QUEUE and either ids or --all")
                moved = await app.retry_dead(args.queue, None if args.all else args.ids)
                print(f"re-queued {moved} message(s) on {args.queue!r}")
            else:
                print(f"purged {await app.purge_dead(args.queue)} dead letter(s)")
            return 0
        finally:
            await app.aclose()

    return anyio.run(run)


INSPECTION = ("status", "workers", "jobs", "job", "purge")


def _inspect(args: argparse.Namespace) -> int:
    from . import _opscli

    app = load_app(args.app)

    async def run() -> int:
        try:
            return await _opscli.COMMANDS[args.command](app, args)
        finally:
            await app.aclose()

    try:
        return anyio.run(run)
    except KeyboardInterrupt:  # --watch ends with Ctrl-C
        return 0


def _worker_command(args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.workers < 1 or args.concurrency < 1:
        raise CliError("--workers and --concurrency must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise CliError("--threads must be at least 1")
    if args.metrics_port is not None:
        from ._worker.metrics import require

        require()  # before forking anything
    if args.workers > 1:
        from ._worker.supervisor import supervise

        load_app(args.app)  # fail fast, in one line, before forking anything
        child = [a for a in (argv if argv is not None else sys.argv[1:])]
        stop = _merged_metrics(args)
        try:
            return supervise([*_without_workers(child), "-w", "1"], args.workers)
        finally:
            stop()
    return _run_worker(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _logfmt.setup(args.log_level, getattr(args, "log_format", "text"))
    try:
        if args.command == "worker":
            return _worker_command(args, argv)
        if args.command == "dead":
            return _dead(args)
        if args.command == "exporter":
            return _run_exporter(args)
        if args.command == "scheduler":
            return _run_scheduler(args)
        if args.command == "schedule":
            return _schedule_list(args)
        if args.command in INSPECTION:
            return _inspect(args)
    except (CliError, BrokerUnavailable, ConfigurationError) as exc:
        print(f"aioq: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


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
