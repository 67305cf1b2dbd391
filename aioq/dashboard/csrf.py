"""CSRF tokens: a random token signed with the dashboard's secret, kept in a
``SameSite=Strict`` cookie and sent back with every action (form field ``csrf``
or header ``X-CSRF-Token``). An action is refused unless both are equal and the
signature holds: another site can neither read the cookie nor forge a token."""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "aioq_csrf"
FIELD = "csrf"
HEADER = "x-csrf-token"


def _sign(secret: bytes, token: str) -> str:
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()[:32]


def mint(secret: bytes) -> str:
    token = secrets.token_urlsafe(18)
    return f"{token}.{_sign(secret, token)}"


def valid(secret: bytes, value: str | None) -> bool:
    if not value or "." not in value:
        return False
    token, signature = value.rsplit(".", 1)
    return hmac.compare_digest(signature, _sign(secret, token))


def accepted(secret: bytes, cookie: str | None, sent: str | None) -> bool:
    """The token ``sent`` with an action matches the signed ``cookie``."""
    if not valid(secret, cookie) or not sent:
        return False
    assert cookie is not None
    return hmac.compare_digest(cookie, sent)
