"""``aioq events APP [--since 10m] [-Q q1,q2] [--kind failed,dead] [--json] [--no-follow]``:
tail the lifecycle events of an app's jobs (``App.events``)."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec

from ._core.event import KINDS

if TYPE_CHECKING:
    import argparse

    from ._core.event import Event
    from .app import App

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], levels: list[str]) -> None:
    ev = sub.add_parser("events", help="tail the lifecycle events of the app's jobs")
    ev.add_argument("app", help="the App, as module:attribute")
    ev.add_argument(
        "--since",
        help="start further back: a span (30s, 10m, 2h, 1d), an ISO time (2026-11-29T10:00Z), "
        "an event id, or 'all' (every event kept); default: new events only",
    )
    ev.add_argument("-Q", "--queues", help="comma-separated queues (default: all known)")
    ev.add_argument("--kind", help=f"comma-separated kinds to show ({', '.join(KINDS)})")
    ev.add_argument("--json", action="store_true", help="one aioq.Event as JSON per line")
    ev.add_argument(
        "--no-follow", action="store_true", help="stop once caught up instead of waiting"
    )
    ev.add_argument("--log-level", default="warning", choices=levels)


def parse_since(text: str | None) -> datetime | timedelta | str | None:
    """What ``--since`` names, as ``App.events(since=…)`` takes it."""
    if text is None:
        return None
    if text == "all":
        return datetime.fromtimestamp(0, tz=UTC)
    span = _SPAN.match(text)
    if span:
        return timedelta(seconds=float(span.group(1)) * _UNIT[span.group(2)])
    if re.match(r"^\d+-\d+$", text):
        return text
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a span (30s, 10m, 2h, 1d), an ISO time, an event id or 'all'"
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def render(ev: Event) -> str:
    """One line: time (UTC), kind, queue, task[job], attempt, worker, detail."""
    at = ev.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    parts = [at, ev.kind.ljust(9), ev.queue, f"{ev.task or '?'}[{ev.job_id or '?'}]"]
    if ev.attempt:
        parts.append(f"attempt={ev.attempt}")
    if ev.worker:
        parts.append(f"worker={ev.worker}")
    line = "  ".join(parts)
    return f"{line}  {ev.detail}" if ev.detail else line


async def events(app: App, args: argparse.Namespace) -> int:
    from ._workercli import CliError

    try:
        since = parse_since(args.since)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    kinds = {k.strip() for k in args.kind.split(",")} if args.kind else None
    if kinds is not None and not kinds <= set(KINDS):
        raise CliError(f"--kind: unknown {sorted(kinds - set(KINDS))}; known: {', '.join(KINDS)}")
    if not app.events_maxlen:
        print("aioq: events are off for this app (events_maxlen=0)", file=sys.stderr)
    async for ev in app.events(since, queues=queues, follow=not args.no_follow):
        if kinds is not None and ev.kind not in kinds:
            continue
        print(msgspec.json.encode(ev).decode() if args.json else render(ev), flush=True)
    return 0
