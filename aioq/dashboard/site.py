"""``create_app(app)``: the dashboard as one Starlette application, mountable
anywhere (every link is built from the mount's ``root_path``)."""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import TYPE_CHECKING

import jinja2
import msgspec
from starlette.applications import Starlette

from . import api, pages
from .api import to_json
from .state import Dashboard

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ..app import App

__all__ = ["Dashboard", "create_app"]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aioq.dashboard", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["json"] = lambda value: jinja2.utils.htmlsafe_json_dumps(
        msgspec.json.decode(to_json(value))
    )
    return env


class _Guard:
    """Security headers on every response, and the optional HTTP Basic ``auth`` or
    bearer ``token`` (header ``Authorization: Bearer T``, or ``?token=T`` once in a
    browser, remembered in a cookie). Pure ASGI, wrapping the router."""

    def __init__(self, inner: ASGIApp, auth: tuple[str, str] | None, token: str | None) -> None:
        self.inner = inner
        self.basic = "Basic " + base64.b64encode(":".join(auth).encode()).decode() if auth else None
        self.token = token

    def _allowed(self, scope: Scope) -> bool:
        if self.basic is None and self.token is None:
            return True
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("authorization", "")
        if self.basic is not None and hmac.compare_digest(given, self.basic):
            return True
        if self.token is not None:
            cookies = headers.get("cookie", "")
            sent = [given.removeprefix("Bearer ")] if given.startswith("Bearer ") else []
            sent += [
                c.strip().removeprefix("aioq_token=")
                for c in cookies.split(";")
                if c.strip().startswith("aioq_token=")
            ]
            query = scope.get("query_string", b"").decode("latin-1")
            sent += [p.removeprefix("token=") for p in query.split("&") if p.startswith("token=")]
            return any(hmac.compare_digest(s.encode(), self.token.encode()) for s in sent)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        if not self._allowed(scope):
            challenge = [(b"www-authenticate", b'Basic realm="aioq"')] if self.basic else []
            await send({"type": "http.response.start", "status": 401, "headers": challenge})
            await send({"type": "http.response.body", "body": b"authentication required\n"})
            return
        nonce = secrets.token_urlsafe(12)
        scope.setdefault("state", {})["nonce"] = nonce
        token_cookie = self._token_cookie(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", _csp(nonce)),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"cache-control", b"no-store"),
                ]
                if token_cookie:
                    headers.append((b"set-cookie", token_cookie))
                message = {**message, "headers": headers}
            await send(message)

        await self.inner(scope, receive, send_with_headers)

    def _token_cookie(self, scope: Scope) -> bytes | None:
        query = scope.get("query_string", b"")
        if self.token is None or b"token=" not in query:
            return None
        path = scope.get("root_path", "") or "/"
        value = f"aioq_token={self.token}; Path={path}; HttpOnly; SameSite=Strict"
        return value.encode("latin-1")


def _csp(nonce: str) -> bytes:
    return (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ).encode()


def create_app(
    app: App,
    *,
    auth: tuple[str, str] | None = None,
    token: str | None = None,
    secret: bytes | None = None,
    poll_interval: float = 2.0,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI application.

    Mount it (``Mount("/aioq", create_app(app))`` in Starlette,
    ``fastapi_app.mount("/aioq", create_app(app))``) or serve it with any ASGI
    server. It uses ``app``'s Redis client; open and close ``app`` as usual.

    Args:
        auth: ``(user, password)`` for HTTP Basic authentication.
        token: a bearer token (``Authorization: Bearer T``, or ``?token=T`` once).
        secret: signs the CSRF tokens (default: random per process, so a restart
            asks for the page again before the next action).
        poll_interval: seconds between the pages' live updates.
    """
    if poll_interval <= 0:
        raise ValueError(f"poll_interval must be positive, not {poll_interval!r}")
    if auth is not None and (len(auth) != 2 or not auth[0]):
        raise ValueError("auth must be (user, password)")
    if token is not None and not token:
        raise ValueError("token must not be empty")
    dash = Dashboard(
        app=app,
        secret=secret or secrets.token_bytes(32),
        poll_s=poll_interval,
        templates=_environment(),
    )
    site = Starlette(routes=[*api.routes(), *pages.routes()])
    site.state.dash = dash
    site.add_middleware(_Guard, auth=auth, token=token)
    return site
