"""The streamable HTTP transport, and who may use it.

Anyone who reaches the port can run code on the host's engine, so the server listens only on a loopback address
unless a bearer token is configured; with a token, every request must carry it (``Authorization: Bearer <token>``),
on loopback too. On loopback the SDK also checks the Host and Origin headers, so a web page cannot reach the server
through DNS rebinding.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from llm_sandbox.errors import ValidationError

logger = logging.getLogger(__name__)

#: A shorter token is refused: it could be guessed.
MIN_TOKEN_LENGTH = 16
TOKEN_VARIABLE = "LLM_SANDBOX_MCP_TOKEN"  # noqa: S105 - the variable's name, not a token


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (a name other than ``localhost`` counts as not: it may resolve to
    anything)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen where others can connect without a token, and refuse a token too short to keep them out."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ValidationError(f"the bearer token must have at least {MIN_TOKEN_LENGTH} characters")
    if token is None and not is_loopback(host):
        raise ValidationError(
            f"refusing to listen on {host!r} without a bearer token: anyone who reaches it could run code. Set "
            f"{TOKEN_VARIABLE} (or --token), or listen on 127.0.0.1"
        )


class BearerTokenGuard:
    """ASGI middleware: an HTTP request without ``Authorization: Bearer <token>`` gets 401 and reaches nothing."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._authorised(scope):
            await _refuse(send)
            return
        await self.app(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        given = next((value for name, value in scope.get("headers", []) if name == b"authorization"), b"")
        return hmac.compare_digest(given, self._expected)  # constant time: the token is not leaked by timing


async def _refuse(send: Send) -> None:
    body = json.dumps({"error": "unauthorized: send Authorization: Bearer <token>"}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_http(app: Any, host: str, port: int, token: str | None) -> None:
    """Serve ``app`` (the SDK's streamable HTTP app) until SIGINT or SIGTERM."""
    import uvicorn

    check_exposure(host, token)
    guarded: ASGIApp = app if token is None else BearerTokenGuard(app, token)
    config = uvicorn.Config(guarded, host=host, port=port, log_level="warning", lifespan="on")
    logger.info("MCP server listening on http://%s:%d%s", host, port, " (bearer token required)" if token else "")
    await uvicorn.Server(config).serve()
