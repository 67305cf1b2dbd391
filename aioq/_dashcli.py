"""``aioq dashboard APP [--host 127.0.0.1] [--port 8080] [--auth USER:PASSWORD | --token T]``:
serve ``aioq.dashboard.create_app(app)`` with uvicorn (the ``aioq[dashboard]`` extra).

It binds to loopback unless told otherwise, and refuses any other address without
``--auth`` or ``--token``: the dashboard can purge queues and abort jobs."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
from typing import TYPE_CHECKING

import anyio

from ._workercli import CliError, _serve, load_app

if TYPE_CHECKING:
    import argparse

log = logging.getLogger("aioq")

EXTRA_HINT = "the dashboard needs its extra: pip install 'aioq[dashboard]'"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dashboard", help="serve the web dashboard (aioq[dashboard])")
    p.add_argument("app", help="the App, as module:attribute")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        default=os.environ.get("AIOQ_DASHBOARD_AUTH"),
        help="require HTTP Basic authentication (default $AIOQ_DASHBOARD_AUTH)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get("AIOQ_DASHBOARD_TOKEN"),
        help="require this bearer token, or ?token=T once in a browser "
        "(default $AIOQ_DASHBOARD_TOKEN)",
    )
    p.add_argument("--poll", type=float, default=2.0, help="seconds between live updates")
    p.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"]
    )


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credentials(args: argparse.Namespace) -> tuple[str, str] | None:
    if not args.auth:
        return None
    user, sep, password = args.auth.partition(":")
    if not sep or not user or not password:
        raise CliError("--auth takes USER:PASSWORD")
    return user, password


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .dashboard import create_app
    except ImportError:
        raise CliError(EXTRA_HINT) from None
    auth = _credentials(args)
    if not loopback(args.host) and auth is None and not args.token:
        raise CliError(
            f"refusing to serve the dashboard on {args.host} without --auth or --token: "
            "anyone who reaches it could purge queues and abort jobs"
        )
    if not 0 < args.port < 65536:
        raise CliError(f"--port must be 1..65535, not {args.port}")
    app = load_app(args.app)
    try:
        site = create_app(app, auth=auth, token=args.token or None, poll_interval=args.poll)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    config = uvicorn.Config(
        site, host=args.host, port=args.port, log_level=args.log_level, lifespan="off"
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        # uvicorn handles SIGINT/SIGTERM itself, then raises them again once it has
        # stopped: into this receiver, so that a stop on a signal exits 0.
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM):
            try:
                await server.serve()
            finally:
                await app.aclose()

    _serve(main)
    if not server.started:
        raise CliError(f"cannot serve on {args.host}:{args.port} (see the log above)")
    return 0
