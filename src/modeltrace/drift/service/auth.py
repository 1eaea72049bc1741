"""Bearer-token authentication of the aggregator service (HTTP and gRPC).

The token is read once from ``--auth-token-file``; requests are checked with a
constant-time comparison (:func:`hmac.compare_digest`) so the answer time does
not reveal how much of a guess was right.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

# Paths that stay open without a token (probes of orchestrators).
UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz"})


class AuthTokenError(ValueError):
    """The token file is unreadable or holds no usable token."""


def load_token(path: Path) -> bytes:
    """Read the token: the file's content without surrounding whitespace."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AuthTokenError(f"cannot read auth token file {path}: {exc.strerror}") from None
    token = raw.strip()
    if not token:
        raise AuthTokenError(f"auth token file {path} is empty")
    if any(b < 0x21 or b > 0x7E for b in token):
        raise AuthTokenError(
            f"auth token in {path} must be printable ASCII without spaces or line breaks"
        )
    return token


class BearerAuth:
    """Checks ``Authorization: Bearer TOKEN`` values in constant time."""

    def __init__(self, token: bytes) -> None:
        self._expected = b"Bearer " + token

    def check(self, authorization: str | bytes | None) -> bool:
        if authorization is None:
            return False
        value = authorization.encode("latin-1") if isinstance(authorization, str) else authorization
        # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
        if value[:7].lower() == b"bearer ":
            value = b"Bearer " + value[7:].strip()
        return hmac.compare_digest(value, self._expected)


class BearerAuthMiddleware:
    """ASGI middleware answering 401 to HTTP requests without the right bearer token."""

    def __init__(self, app: ASGIApp, auth: BearerAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUTHENTICATED_PATHS:
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        if self.auth.check(header):
            await self.app(scope, receive, send)
            return
        message = "missing bearer token" if header is None else "invalid bearer token"
        body = json.dumps({"code": 16, "message": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="modeltrace"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
