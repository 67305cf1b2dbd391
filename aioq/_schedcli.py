"""``aioq schedule list|pause|resume|remove APP [NAME]``: the app's schedules (of
its code and added at run time) and steering them (``app.schedules``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    import argparse
    from datetime import datetime

    from ._core.schedule import ScheduleInfo
    from .app import App


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], levels: list[str]) -> None:
    sl = sub.add_parser(
        "schedule", help="the app's schedules (next and last run); pause, resume or remove one"
    )
    sl.add_argument("action", choices=["list", "pause", "resume", "remove"])
    sl.add_argument("app", help="the App, as module:attribute")
    sl.add_argument("name", nargs="?", help="the schedule (pause, resume, remove)")
    sl.add_argument("--json", action="store_true", help="with list: aioq.ScheduleInfo as JSON")
    sl.add_argument("--log-level", default="warning", choices=levels)


def _stamp(at: datetime | None, tz: str) -> str:
    from ._worker.scheduler import stamp

    return stamp(round(at.timestamp() * 1000), tz) if at is not None else "-"


def render(found: list[ScheduleInfo]) -> str:
    header = ["NAME", "TASK", "SPEC", "QUEUE", "SOURCE", "STATE", "NEXT RUN", "LAST RUN"]
    rows = [
        [
            s.name,
            s.task,
            s.spec,
            s.queue,
            s.source,
            "paused" if s.paused else "active",
            _stamp(s.next_run, s.tz),
            _stamp(s.last_run, s.tz),
            s.last_job or "-",
        ]
        for s in found
    ]
    header.append("LAST JOB")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


async def schedule(app: App, args: argparse.Namespace) -> int:
    from ._workercli import CliError

    if args.action == "list":
        found = await app.schedules.list()
        if args.json:
            print(msgspec.json.encode(found).decode())
        else:
            print(render(found))
            print(f"{len(found)} schedule(s)", file=sys.stderr)
        return 0
    if not args.name:
        raise CliError(f"schedule {args.action} needs the schedule's NAME")
    try:
        if args.action == "remove":
            if not await app.schedules.remove(args.name):
                print(f"aioq: no schedule {args.name!r} added at run time", file=sys.stderr)
                return 1
            print(f"removed schedule {args.name!r}")
            return 0
        if args.action == "pause":
            changed = await app.schedules.pause(args.name)
            print(f"paused schedule {args.name!r}" + ("" if changed else " (it already was)"))
        else:
            changed = await app.schedules.resume(args.name)
            note = " from its next tick" if changed else " (it was not paused)"
            print(f"resumed schedule {args.name!r}{note}")
    except KeyError as exc:
        print(f"aioq: {exc.args[0]}", file=sys.stderr)
        return 1
    return 0
