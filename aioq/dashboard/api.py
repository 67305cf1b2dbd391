"""The JSON API under ``/api/`` (what the pages poll, and what scripts may call).

Reads: ``GET /api/status``, ``/api/workers``, ``/api/jobs?state=&queue=&limit=``,
``/api/jobs/{id}``, ``/api/dead?queue=&limit=``, ``/api/schedules``. Actions
(``POST``, header ``X-CSRF-Token`` equal to the ``aioq_csrf`` cookie a page set):
``/api/queues/{queue}/purge``, ``/api/dead/{queue}/retry`` (JSON body
``{"ids": [...]}``, or none for all), ``/api/dead/{queue}/purge``,
``/api/jobs/{id}/abort``, ``/api/schedules/{name}/pause|resume``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from starlette.responses import Response
from starlette.routing import Route

from .. import status as read_model
from ..errors import BrokerUnavailable
from . import csrf
from .actions import Action, ActionError, perform, schedule_controls

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from ..deadletter import DeadLetter
    from .state import Dashboard

LIMIT_MAX = 1000


def dash_of(request: Request) -> Dashboard:
    dash: Dashboard = request.app.state.dash
    return dash


def _fallback(value: Any) -> Any:
    return repr(value)  # arguments and results msgpack carried but JSON cannot


_encoder = msgspec.json.Encoder(enc_hook=_fallback)


def to_json(value: Any) -> bytes:
    return _encoder.encode(value)


def _json(value: Any, status: int = 200) -> Response:
    return Response(to_json(value), status, media_type="application/json")


def _limit(request: Request, default: int = 100) -> int:
    raw = request.query_params.get("limit", str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ActionError(f"limit must be a whole number, not {raw!r}") from None
    if not 1 <= value <= LIMIT_MAX:
        raise ActionError(f"limit must be 1..{LIMIT_MAX}, not {value}")
    return value


def guarded(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Bad input → 400 with the reason; Redis unreachable → 503."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except ActionError as exc:
            return _json({"error": str(exc)}, 400)
        except BrokerUnavailable as exc:
            return _json({"error": str(exc)}, 503)

    return run


async def status_payload(dash: Dashboard) -> dict[str, Any]:
    """``App.status()`` plus the throughput series (which this read also samples)."""
    st = await dash.app.status()
    dash.history.add(st)
    out: dict[str, Any] = msgspec.to_builtins(st)
    out["throughput"] = dash.history.series()
    return out


@guarded
async def get_status(request: Request) -> Response:
    return _json(await status_payload(dash_of(request)))


@guarded
async def get_workers(request: Request) -> Response:
    return _json(await dash_of(request).app.workers())


@guarded
async def get_jobs(request: Request) -> Response:
    state = request.query_params.get("state", "running")
    try:
        found = await dash_of(request).app.jobs(
            state, queue=request.query_params.get("queue") or None, limit=_limit(request)
        )
    except ValueError as exc:
        raise ActionError(str(exc)) from None
    return _json(found)


@guarded
async def get_job(request: Request) -> Response:
    detail = await read_model.job_detail(dash_of(request).app, request.path_params["id"])
    out: dict[str, Any] = msgspec.json.decode(to_json(detail))
    error = detail.info.error  # array-like on the wire; an object here
    if error is not None:
        out["info"]["error"] = {
            "type": error.type,
            "message": error.message,
            "traceback": error.traceback,
        }
    return _json(out, 200 if detail.known else 404)


def dead_view(d: DeadLetter) -> dict[str, Any]:
    """A dead letter without its raw payload (a preview of the call instead)."""
    out: dict[str, Any] = msgspec.to_builtins(d)
    del out["payload"]
    return out


@guarded
async def get_dead(request: Request) -> Response:
    queue = request.query_params.get("queue") or None
    letters = await dash_of(request).app.dead_letters(queue, limit=_limit(request))
    return _json([dead_view(d) for d in letters])


@guarded
async def get_schedules(request: Request) -> Response:
    dash = dash_of(request)
    rows = await read_model.schedule_overview(dash.app)
    return _json({"controls": schedule_controls(dash.app) is not None, "schedules": rows})


async def _post(request: Request, action: Action) -> Response:
    dash = dash_of(request)
    if not csrf.accepted(
        dash.secret, request.cookies.get(csrf.COOKIE), request.headers.get(csrf.HEADER)
    ):
        return _json({"error": "missing or wrong CSRF token (X-CSRF-Token)"}, 403)
    count, message = await perform(dash.app, action)
    return _json({"ok": True, "count": count, "message": message})


async def _ids(request: Request) -> list[str]:
    body = await request.body()
    if not body.strip():
        return []
    try:
        data = msgspec.json.decode(body, type=dict[str, list[str]])
    except msgspec.DecodeError as exc:
        raise ActionError(f'body must be {{"ids": ["<dead-letter id>", ...]}}: {exc}') from None
    return data.get("ids", [])


@guarded
async def post_purge(request: Request) -> Response:
    return await _post(request, Action("purge", queue=request.path_params["queue"]))


@guarded
async def post_retry_dead(request: Request) -> Response:
    queue = request.path_params["queue"]
    return await _post(request, Action("retry-dead", queue=queue, ids=await _ids(request)))


@guarded
async def post_purge_dead(request: Request) -> Response:
    return await _post(request, Action("purge-dead", queue=request.path_params["queue"]))


@guarded
async def post_abort(request: Request) -> Response:
    return await _post(request, Action("abort", job=request.path_params["id"]))


@guarded
async def post_schedule(request: Request) -> Response:
    kind = request.path_params["verb"]
    if kind not in ("pause", "resume"):
        raise ActionError(f"unknown schedule action {kind!r}")
    return await _post(request, Action(kind, schedule=request.path_params["name"]))


def routes() -> list[Route]:
    return [
        Route("/api/status", get_status),
        Route("/api/workers", get_workers),
        Route("/api/jobs", get_jobs),
        Route("/api/jobs/{id}", get_job),
        Route("/api/jobs/{id}/abort", post_abort, methods=["POST"]),
        Route("/api/dead", get_dead),
        Route("/api/dead/{queue}/retry", post_retry_dead, methods=["POST"]),
        Route("/api/dead/{queue}/purge", post_purge_dead, methods=["POST"]),
        Route("/api/queues/{queue}/purge", post_purge, methods=["POST"]),
        Route("/api/schedules", get_schedules),
        Route("/api/schedules/{name}/{verb}", post_schedule, methods=["POST"]),
    ]
