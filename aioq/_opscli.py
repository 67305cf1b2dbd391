"""``aioq status|workers|jobs|job|purge``: printing the read model (``App.status``,
``App.workers``, ``App.jobs``, ``Job.info``) as tables or JSON, and ``purge``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable, Sequence

    from .app import App
    from .status import JobSummary, Status, WorkerStatus


def _json(value: Any) -> None:
    print(msgspec.json.encode(value).decode())


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _time(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if at else "-"


def render_status(status: Status) -> str:
    rows: list[list[str]] = []
    for q in status.queues:
        counts = [q.ready, q.scheduled, q.running, q.retrying, q.dead]
        rows.append([q.name, *map(str, counts), _age(q.oldest_ready_age_s), str(q.consumers)])
        for lv in q.levels:
            counts = [lv.ready, lv.scheduled, lv.running, lv.retrying]
            age = _age(lv.oldest_ready_age_s)
            rows.append([f"  priority {lv.priority}", *map(str, counts), "", age, ""])
        for p in q.partitions:  # a partitioned queue: the sum above, each one here
            counts = [p.ready, p.scheduled, p.running, p.retrying, p.dead]
            age = _age(p.oldest_ready_age_s)
            rows.append([f"  {p.name}", *map(str, counts), age, str(p.consumers)])
    header = ["QUEUE", "READY", "SCHEDULED", "RUNNING", "RETRYING", "DEAD", "OLDEST", "CONSUMERS"]
    parts = [_table(header, rows), "", render_workers(status.workers, status.at)]
    return "\n".join(parts)


def render_workers(workers: Sequence[WorkerStatus], now: datetime | None = None) -> str:
    if not workers:
        return "no live worker"
    now = now or datetime.now(UTC)
    rows = [
        [
            w.id,
            w.host,
            str(w.pid),
            ",".join(w.queues),
            f"{w.running}/{w.concurrency}",
            str(w.processed),
            str(w.failed),
            _age((now - w.started_at).total_seconds()) if w.started_at else "-",
            _age(w.last_seen_s),
            w.version,
        ]
        for w in workers
    ]
    header = ["WORKER", "HOST", "PID", "QUEUES", "RUNNING", "PROCESSED", "FAILED", "UP", "SEEN"]
    return _table([*header, "VERSION"], rows)


def render_jobs(jobs: Sequence[JobSummary]) -> str:
    def when(j: JobSummary) -> str:
        return _time(j.due_at or j.started_at or j.enqueued_at)

    rows = [
        [
            j.id or "?",
            j.queue + (f":{j.priority}" if j.priority else ""),
            j.task or "?",
            j.args,
            str(j.attempts),
            when(j),
            j.worker or j.reason or "",
        ]
        for j in jobs
    ]
    header = ["JOB", "QUEUE", "TASK", "ARGS", "ATTEMPTS", "TIME", "WORKER / REASON"]
    return _table(header, rows)


async def status(app: App, args: argparse.Namespace) -> int:
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    while True:
        st = await app.status(queues)
        if args.json:
            _json(st)
        else:
            if args.watch and sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            print(render_status(st))
        if not args.watch:
            return 0
        sys.stdout.flush()
        await anyio.sleep(args.watch)
        if not args.json:
            print()


async def workers(app: App, args: argparse.Namespace) -> int:
    found = await app.workers()
    if args.json:
        _json(found)
    else:
        print(render_workers(found))
    return 0 if found else 1


async def jobs(app: App, args: argparse.Namespace) -> int:
    found = await app.jobs(args.state, queue=args.queue, limit=args.limit)
    if args.json:
        _json(found)
    else:
        print(render_jobs(found))
        print(f"{len(found)} {args.state} job(s)", file=sys.stderr)
    return 0


async def job(app: App, args: argparse.Namespace) -> int:
    info = await app.job(args.id).info()
    if info.task is None and info.enqueued_at is None and info.attempts == 0:
        print(f"aioq: no record of job {args.id!r} (never sent, or expired)", file=sys.stderr)
        return 1
    if args.json:
        _json(info)
        return 0
    lines = [
        ("id", info.id),
        ("state", info.state.value),
        ("task", info.task or "-"),
        ("queue", info.queue or "-"),
        ("attempts", str(info.attempts)),
        ("worker", info.worker or "-"),
        ("enqueued", _time(info.enqueued_at)),
        ("due", _time(info.due_at)),
        ("started", _time(info.started_at)),
        ("finished", _time(info.finished_at)),
    ]
    if info.started_at and info.finished_at:
        took = (info.finished_at - info.started_at).total_seconds()
        lines.append(("took", f"{took:.3f}s"))
    if info.progress is not None:
        p = info.progress
        total = f"/{p.total:g}" if p.total is not None else ""
        lines.append(("progress", f"{p.current:g}{total} {p.info or ''}".rstrip()))
    if info.state.value == "succeeded":
        lines.append(("result", repr(info.result)))
    if info.error is not None:
        lines.append(("error", f"{info.error.type}: {info.error.message}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    if info.error is not None and info.error.traceback:
        print()
        print(info.error.traceback.rstrip())
    return 0


async def purge(app: App, args: argparse.Namespace) -> int:
    if not args.yes:
        st = await app.status([args.queue])
        ready = st.queues[0].ready
        if ready == 0:
            print(f"no ready message on {args.queue!r}")
            return 0
        answer = await anyio.to_thread.run_sync(
            _ask, f"drop {ready} ready message(s) of queue {args.queue!r}? [y/N] "
        )
        if answer not in ("y", "yes"):
            print("nothing purged", file=sys.stderr)
            return 1
    dropped = await app.purge(args.queue)
    print(f"purged {dropped} ready message(s) from {args.queue!r} (their jobs are now aborted)")
    return 0


def _ask(prompt: str) -> str:
    try:
        return input(prompt).strip().lower()
    except EOFError:
        return ""


COMMANDS: dict[str, Callable[[App, argparse.Namespace], Awaitable[int]]] = {
    "status": status,
    "workers": workers,
    "jobs": jobs,
    "job": job,
    "purge": purge,
}
