"""The ``aioq`` command line.

aioq worker myapp.tasks:app [-Q default,math] [-c 100] [--threads N] [-w 1] [--scheduler]
            [--include MODULE…] [--strict] [--log-level info]   (-A APP, --loglevel also work;
            $AIOQ_CONCURRENCY, $AIOQ_QUEUES, $AIOQ_WORKERS, $AIOQ_THREADS, $AIOQ_GRACE are defaults)
            [--health-port 8081] [--metrics-port 9100] [--loop auto|uvloop|asyncio]
aioq exporter myapp.tasks:app [--port 9100]
aioq scheduler myapp.tasks:app
aioq schedule list|pause|resume|remove myapp.tasks:app [NAME]
aioq status|workers|jobs|job|purge|events myapp.tasks:app …   (see docs/operations.md)
aioq dashboard myapp.tasks:app [--host 127.0.0.1] [--port 8080] [--auth U:P | --token T]
aioq --version
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import anyio

from . import _dashcli, _eventcli, _logfmt, _schedcli
from ._version import __version__
from ._workercli import LOOPS, CliError, _serve, _worker_command, load_app
from .errors import BrokerUnavailable, ConfigurationError

log = logging.getLogger("aioq")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aioq", description="aioq task queue")
    parser.add_argument("--version", action="version", version=f"aioq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a worker")
    w.add_argument(
        "app",
        nargs="?",
        help="the App to serve, as module:attribute (e.g. myapp.tasks:app) or "
        "path/to/file.py:attribute",
    )
    w.add_argument("-A", "--app", dest="app_option", help="the App (Celery's spelling)")
    w.add_argument(
        "-I",
        "--include",
        nargs="+",
        metavar="MODULE",
        help="task modules to import at start, besides the App's include=[...]",
    )
    w.add_argument(
        "-Q",
        "--queues",
        help="comma-separated queues (default: $AIOQ_QUEUES, else every queue the "
        "app's tasks name, plus its default queue)",
    )
    w.add_argument(
        "-c",
        "--concurrency",
        type=int,
        default=None,
        help="tasks run at once per process (default $AIOQ_CONCURRENCY, else 100)",
    )
    w.add_argument(
        "--threads",
        type=int,
        default=None,
        help="sync tasks run at once per process, each in a thread (default: $AIOQ_THREADS, "
        "else 4 per CPU core, at most -c); more wait for a thread while holding their slot",
    )
    w.add_argument(
        "-w",
        "--workers",
        type=int,
        default=None,
        help="worker processes, each with its own event loop (default $AIOQ_WORKERS, else 1)",
    )
    w.add_argument(
        "--grace",
        type=float,
        default=None,
        help="seconds in-flight tasks get to finish on SIGTERM (default $AIOQ_GRACE, else 30)",
    )
    w.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying an unreachable Redis at start (default 30)",
    )
    w.add_argument(
        "--log-level",
        "--loglevel",
        type=str.lower,
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
        "--loop",
        choices=LOOPS,
        default=None,
        help="the event loop: auto (default $AIOQ_LOOP, else uvloop when installed), "
        "uvloop, or asyncio's own (about 2 MB less memory per process; see docs/scaling.md)",
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
        "other than noeviction), or when the app has no task or its routes or schedules "
        "name tasks it does not have; without it a warning is logged",
    )
    w.add_argument(
        "--burst",
        action="store_true",
        help="exit (code 0) once the queues are empty, delayed messages included, and "
        "nothing runs; for CI jobs and one-off backfills (one process: no -w)",
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
    w.add_argument(
        "--unknown-task-grace",
        type=float,
        default=None,
        metavar="SECONDS",
        help="hand messages of tasks this worker does not know back for this long, for a "
        "worker running newer code (rolling deploys), then dead-letter them; 0: at once "
        "(default $AIOQ_UNKNOWN_TASK_GRACE, else 60)",
    )
    w.add_argument(
        "--reload",
        action="store_true",
        help="restart the worker when a Python file changes (development; needs aioq[reload])",
    )
    w.add_argument(
        "--reload-dir",
        action="append",
        metavar="DIR",
        help="with --reload: a directory to watch (repeatable; default: the current one)",
    )
    w.add_argument("--name", help=argparse.SUPPRESS)

    s = sub.add_parser("scheduler", help="run the app's periodic schedules (no tasks)")
    s.add_argument("app", nargs="?", help="the App whose schedules to run, as module:attribute")
    s.add_argument("-A", "--app", dest="app_option", help="the App (Celery's spelling)")
    s.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        help="seconds to keep retrying an unreachable Redis at start (default 30)",
    )
    s.add_argument("--log-level", "--loglevel", type=str.lower, default="info", choices=LEVELS)
    s.add_argument("--log-format", default="text", choices=["text", "json"])

    _schedcli.add_parser(sub, LEVELS)
    _eventcli.add_parser(sub, LEVELS)

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
    _dashcli.add_parser(sub)
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


def _run_scheduler(args: argparse.Namespace) -> int:
    from ._worker.scheduler import Scheduler

    if not (args.app or args.app_option):
        raise CliError("which app? give it as module:attribute (or -A module:attribute)")
    app = load_app(args.app or args.app_option)
    try:
        scheduler = Scheduler(app, connect_timeout=args.connect_timeout)
    except (ConfigurationError, TypeError) as exc:
        raise CliError(f"a schedule cannot be sent: {exc}") from None

    async def main() -> None:
        await scheduler.run(handle_signals=True)
        await app.aclose()

    _serve(main)
    return 0


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
                if args.all:
                    moved = await app.retry_dead(args.queue, None)
                    print(f"re-queued {moved} message(s) on {args.queue!r}")
                    return 0
                missing: list[str] = []
                moved = 0
                for entry_id in dict.fromkeys(args.ids):  # one by one: say which are missing
                    one = await app.retry_dead(args.queue, [entry_id])
                    moved += one
                    if not one:
                        missing.append(entry_id)
                print(f"re-queued {moved} message(s) on {args.queue!r}")
                for entry_id in missing:
                    print(f"no dead letter {entry_id} on {args.queue!r}", file=sys.stderr)
                return 1 if missing else 0
            else:
                print(f"purged {await app.purge_dead(args.queue)} dead letter(s)")
            return 0
        finally:
            await app.aclose()

    return anyio.run(run)


INSPECTION = ("status", "workers", "jobs", "job", "purge", "events", "schedule")


def _inspect(args: argparse.Namespace) -> int:
    from . import _opscli

    app = load_app(args.app)
    commands = _opscli.COMMANDS | {"events": _eventcli.events, "schedule": _schedcli.schedule}

    async def run() -> int:
        try:
            return await commands[args.command](app, args)
        finally:
            await app.aclose()

    try:
        return anyio.run(run)
    except KeyboardInterrupt:  # --watch ends with Ctrl-C
        return 0


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
        if args.command in INSPECTION:
            return _inspect(args)
        if args.command == "dashboard":
            return _dashcli.run(args)
    except (CliError, BrokerUnavailable, ConfigurationError) as exc:
        print(f"aioq: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2
