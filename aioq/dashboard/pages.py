"""The HTML pages (server-rendered with Jinja2; each page's small script polls the
JSON API for live updates) and the form actions, which always ask first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, parse_qsl, quote, urlencode

from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import status as read_model
from ..errors import BrokerUnavailable
from . import csrf
from .actions import Action, ActionError, describe, perform, schedule_controls
from .api import dash_of, status_payload

if TYPE_CHECKING:
    from starlette.requests import Request

LIST_LIMIT = 50
STATES = ("running", "queued", "scheduled", "retrying", "failed")


def base_of(request: Request) -> str:
    """Where the dashboard is mounted ('' at the root of its server)."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def render(request: Request, template: str, code: int = 200, **context: Any) -> Response:
    """A page, with the CSRF cookie (kept when valid, else a fresh one)."""
    dash = dash_of(request)
    token = request.cookies.get(csrf.COOKIE)
    fresh = not csrf.valid(dash.secret, token)
    if fresh:
        token = csrf.mint(dash.secret)
    base = base_of(request)
    context.setdefault("nav", "")
    html = dash.templates.get_template(template).render(
        base=base,
        nonce=request.scope.get("state", {}).get("nonce", ""),
        csrf_token=token,
        poll_ms=int(dash.poll_s * 1000),
        flash=request.query_params.get("done", ""),
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    )
    response = HTMLResponse(html, code)
    if fresh:
        assert token is not None
        response.set_cookie(csrf.COOKIE, token, path=base or "/", httponly=True, samesite="strict")
    return response


def page(handler: Any) -> Any:
    """Redis unreachable → a 503 page saying so (the page retries by itself)."""

    async def run(request: Request) -> Response:
        try:
            response: Response = await handler(request)
            return response
        except BrokerUnavailable as exc:
            return render(request, "error.html", 503, title="Redis unavailable", error=str(exc))
        except ActionError as exc:
            return render(request, "error.html", 400, title="Cannot do that", error=str(exc))

    return run


@page
async def overview(request: Request) -> Response:
    payload = await status_payload(dash_of(request))
    return render(request, "overview.html", title="Overview", nav="overview", status=payload)


@page
async def queue(request: Request) -> Response:
    app = dash_of(request).app
    name = request.path_params["queue"]
    st = await app.status([name])
    lists = await asyncio.gather(*(app.jobs(s, queue=name, limit=LIST_LIMIT) for s in STATES))
    return render(
        request,
        "queue.html",
        title=f"Queue {name}",
        nav="overview",
        queue=st.queues[0],
        jobs=dict(zip(STATES, lists, strict=True)),
        limit=LIST_LIMIT,
    )


@page
async def find_job(request: Request) -> Response:
    wanted = request.query_params.get("id", "").strip()
    if not wanted:
        return RedirectResponse(base_of(request) + "/", 303)
    return RedirectResponse(f"{base_of(request)}/jobs/{quote(wanted, safe='')}", 303)


@page
async def job(request: Request) -> Response:
    detail = await read_model.job_detail(dash_of(request).app, request.path_params["id"])
    return render(
        request,
        "job.html",
        code=200 if detail.known else 404,
        title=f"Job {detail.info.id}",
        nav="",
        job=detail,
    )


@page
async def failed(request: Request) -> Response:
    app = dash_of(request).app
    letters, retrying = await asyncio.gather(
        app.dead_letters(limit=LIST_LIMIT * 4), app.jobs("retrying", limit=LIST_LIMIT)
    )
    queues = sorted({d.queue for d in letters})
    return render(
        request,
        "failed.html",
        title="Failed",
        nav="failed",
        dead=letters,
        dead_queues=queues,
        retrying=retrying,
    )


@page
async def schedules(request: Request) -> Response:
    app = dash_of(request).app
    rows = await read_model.schedule_overview(app)
    return render(
        request,
        "schedules.html",
        title="Schedules",
        nav="schedules",
        rows=rows,
        controls=schedule_controls(app) is not None,
    )


@page
async def workers(request: Request) -> Response:
    found = await dash_of(request).app.workers()
    now = datetime.now(UTC)
    return render(request, "workers.html", title="Workers", nav="workers", workers=found, now=now)


def _safe_next(request: Request, target: str | None) -> str:
    """Only a path of this dashboard (never another site) to go back to."""
    base = base_of(request)
    if not target or not target.startswith(base + "/") or target.startswith("//"):
        return base + "/"
    path, _, query = target.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "done"]
    return path + (f"?{urlencode(kept)}" if kept else "")


@page
async def act(request: Request) -> Response:
    """``POST /actions/{kind}``: without ``confirm=yes``, a page asking to confirm
    (which posts the same fields again with it); with it, the action, then back
    to ``next`` with what happened."""
    dash = dash_of(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)

    def one(key: str) -> str | None:
        values = form.get(key)
        return values[0] if values and values[0] else None

    if not csrf.accepted(dash.secret, request.cookies.get(csrf.COOKIE), one(csrf.FIELD)):
        return render(
            request,
            "error.html",
            403,
            title="Refused",
            error="The form's CSRF token is missing or stale: reload the page and try again.",
        )
    action = Action(
        kind=request.path_params["kind"],
        queue=one("queue"),
        ids=[i for i in form.get("id", []) if i],
        job=one("job"),
        schedule=one("schedule"),
    )
    back = _safe_next(request, one("next"))
    if one("confirm") != "yes":
        question = await describe(dash.app, action)
        fields = [(k, v) for k, vs in form.items() if k not in ("confirm", csrf.FIELD) for v in vs]
        return render(
            request,
            "confirm.html",
            title="Confirm",
            nav="",
            question=question,
            fields=fields,
            kind=action.kind,
            back=back,
        )
    _, message = await perform(dash.app, action)
    joiner = "&" if "?" in back else "?"
    return RedirectResponse(back + joiner + urlencode({"done": message}), 303)


def routes() -> list[Route]:
    return [
        Route("/", overview),
        Route("/queues/{queue}", queue),
        Route("/jobs", find_job),
        Route("/jobs/{id}", job),
        Route("/failed", failed),
        Route("/schedules", schedules),
        Route("/workers", workers),
        Route("/actions/{kind}", act, methods=["POST"]),
    ]
