"""Console sign-in: a signed, expiring session cookie, and the CSRF token of each session.

The cookie holds the sha256 of the API key the operator signed in with (what the store
keeps, never the key), an expiry and a random nonce, signed with HMAC-SHA256 under the
server's secret (``TETHER_CONSOLE_SECRET``, else random per process: a restart signs
everyone out). Every request looks the key up again, so a revoked key ends its sessions
at once. The CSRF token is an HMAC of the nonce: one per session, checked on every POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

COOKIE = "tether_console"
TTL_SECONDS = 8 * 3600
SECRET_ENV = "TETHER_CONSOLE_SECRET"
_MAX_COOKIE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: a tenant key's tenant, or an operator (every tenant)."""

    tenant: str | None
    """None for an operator key: every tenant."""
    operator: bool
    csrf: str
    key_prefix: str

    def scope(self) -> str | None:
        """The tenant every read is scoped to (None: all)."""
        return None if self.operator else self.tenant


@dataclass(frozen=True, slots=True)
class Signed:
    key_hash: str
    nonce: str
    expires: float


class Signer:
    def __init__(self, secret: bytes | None = None) -> None:
        env = os.environ.get(SECRET_ENV)
        self._secret = secret or (env.encode() if env else secrets.token_bytes(32))

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def issue(self, key_hash: str, *, now: float | None = None) -> tuple[str, Signed]:
        signed = Signed(key_hash, secrets.token_urlsafe(16), (now or time.time()) + TTL_SECONDS)
        body = json.dumps({"h": signed.key_hash, "n": signed.nonce, "e": signed.expires})
        raw = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        mac = base64.urlsafe_b64encode(self._mac(raw.encode())).decode().rstrip("=")
        return f"{raw}.{mac}", signed

    def read(self, cookie: str | None, *, now: float | None = None) -> Signed | None:
        """The cookie's contents when its signature holds and it has not expired."""
        if not cookie or len(cookie) > _MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        raw, mac = cookie.split(".")
        want = base64.urlsafe_b64encode(self._mac(raw.encode())).decode().rstrip("=")
        if not hmac.compare_digest(want, mac):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            signed = Signed(str(body["h"]), str(body["n"]), float(body["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return signed if signed.expires > (now or time.time()) else None

    def csrf(self, signed: Signed) -> str:
        return hmac.new(self._secret, b"csrf:" + signed.nonce.encode(), "sha256").hexdigest()

    def csrf_ok(self, signed: Signed, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(self.csrf(signed), token)


def set_cookie(response: Response, value: str, request: Request) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=TTL_SECONDS,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """A POST's ``Origin`` (when the browser sends one) names this server."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host
