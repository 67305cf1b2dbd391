"""What the dashboard's buttons (and ``POST /api/...``) do: purge a queue's ready
messages, re-drive or delete dead letters, abort a job, pause or resume a
schedule. One place for each action's check, description and effect, so the
confirmation page says exactly what the action will do."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app import App

KINDS = ("purge", "retry-dead", "purge-dead", "abort", "pause", "resume")


class ActionError(ValueError):
    """The action cannot be done as asked (the message says why)."""


@dataclass(frozen=True)
class Action:
    kind: str
    queue: str | None = None
    ids: list[str] = field(default_factory=list)
    """Dead-letter entry ids for ``retry-dead`` (empty: all of the queue's)."""
    job: str | None = None
    schedule: str | None = None

    def check(self, app: App) -> None:
        if self.kind not in KINDS:
            raise ActionError(f"unknown action {self.kind!r}")
        if self.kind in ("purge", "retry-dead", "purge-dead") and not self.queue:
            raise ActionError(f"{self.kind} needs a queue")
        if self.kind == "abort" and not self.job:
            raise ActionError("abort needs a job id")
        if self.kind in ("pause", "resume"):
            if not self.schedule:
                raise ActionError(f"{self.kind} needs a schedule name")
            if schedule_controls(app) is None:
                raise ActionError("this app's schedules cannot be paused at run time")


def schedule_controls(app: App) -> Any:
    """``app.schedules`` when it can pause and resume schedules at run time, else None."""
    found = getattr(app, "schedules", None)
    ok = callable(getattr(found, "pause", None)) and callable(getattr(found, "resume", None))
    return found if ok else None


async def describe(app: App, action: Action) -> str:
    """What the action will do, for its confirmation page."""
    action.check(app)
    if action.kind == "purge":
        ready = (await app.status([action.queue or ""])).queues[0].ready
        return (
            f"Drop the {ready} ready message(s) of queue {action.queue!r} that no worker "
            "has taken? Their jobs end aborted; running jobs are not touched."
        )
    if action.kind == "retry-dead":
        what = f"{len(action.ids)} dead letter(s)" if action.ids else "every dead letter"
        return f"Put {what} of queue {action.queue!r} back on the queue, to run afresh?"
    if action.kind == "purge-dead":
        return f"Delete every dead letter of queue {action.queue!r}? They cannot be re-driven."
    if action.kind == "abort":
        return f"Abort job {action.job!r}? A running async task is cancelled."
    return f"{action.kind.capitalize()} schedule {action.schedule!r}?"


async def perform(app: App, action: Action) -> tuple[int, str]:
    """Do it; returns (how many things changed, a sentence saying what happened)."""
    action.check(app)
    queue = action.queue or ""
    if action.kind == "purge":
        n = await app.purge(queue)
        return n, f"purged {n} ready message(s) from {queue!r}"
    if action.kind == "retry-dead":
        n = await app.retry_dead(queue, action.ids or None)
        return n, f"re-queued {n} dead letter(s) on {queue!r}"
    if action.kind == "purge-dead":
        n = await app.purge_dead(queue)
        return n, f"deleted {n} dead letter(s) of {queue!r}"
    if action.kind == "abort":
        done = await app.job(action.job or "").abort()
        return int(done), f"aborted job {action.job}" if done else f"job {action.job} had ended"
    controls = schedule_controls(app)
    try:
        result = getattr(controls, action.kind)(action.schedule)
        if inspect.isawaitable(result):
            result = await result
    except KeyError:  # ``app.schedules`` knows no schedule of that name
        raise ActionError(f"no schedule named {action.schedule!r}") from None
    if result is False:  # it already was paused / was not paused
        return 0, f"schedule {action.schedule!r} was {action.kind}d already"
    return 1, f"{action.kind}d schedule {action.schedule!r}"
