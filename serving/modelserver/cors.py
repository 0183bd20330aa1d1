"""``--rest_api_enable_cors_support``: TF Serving's REST API callable from pages on any origin.

As TF Serving does with the flag on: every REST answer allows any origin, and a preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) is answered 200 with the methods and headers
the API uses, without reaching the API itself.
"""

from __future__ import annotations

from typing import Any

from serving.modelserver.rest import Receive, Scope, Send

ALLOW_ORIGIN = (b"access-control-allow-origin", b"*")
PREFLIGHT_HEADERS = [
    ALLOW_ORIGIN,
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type"),
    (b"access-control-max-age", b"600"),
    (b"content-length", b"0"),
]


class Cors:
    """Wraps the REST ASGI app; with the flag off the app is used as it is (no wrapper)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 200, "headers": PREFLIGHT_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_allowing(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), ALLOW_ORIGIN]
            await send(message)

        await self.app(scope, receive, send_allowing)
