"""Pure ASGI middleware around every HTTP request: request id, deadline, body limit and read
timeout, access log.

Pure ASGI (not BaseHTTPMiddleware) keeps the hot path to a few attribute reads per request.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import tracing
from serving.errors import PayloadTooLarge
from serving.gateway.accesslog import AccessLog
from serving.gateway.context import CURRENT, CallContext, new_request_id
from serving.http_timeouts import receive_with_deadline
from serving.tfserving.encode import error_body


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        access: AccessLog,
        request_s: float,
        max_body: int,
        request_key: str,
        body_read_s: float = 20.0,
    ) -> None:
        self.app = app
        self._access = access
        self._request_s = request_s
        self._max_body = max_body
        self._body_read_s = body_read_s
        self._request_key = request_key.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given_id = request_key = length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given_id = value.decode("latin-1")
            elif name == b"content-length":
                length = value
            elif name == self._request_key:
                request_key = value.decode("latin-1")
        now = time.monotonic()
        call = CallContext(new_request_id(given_id), now + self._request_s, request_key)
        scope.setdefault("state", {})["call"] = call
        status = 500
        id_header = (b"x-request-id", call.request_id.encode("latin-1"))

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append(id_header)
                if call.servable:
                    headers.append((b"x-servable", call.servable.encode("utf-8")))
                    if call.version:
                        headers.append((b"x-model-version", call.version.encode("latin-1")))
                if call.degraded:
                    headers.append((b"x-degraded", b"true"))
                headers.append((b"server-timing", tracing.server_timing(call.started, tracing.trace_id())))
                if status == 408:  # a client too slow to send its body: the connection is not reused
                    headers.append((b"connection", b"close"))
                message["headers"] = headers
            await send(message)

        token = CURRENT.set(call)
        try:
            if length is not None and length.isdigit() and int(length) > self._max_body:
                await self._too_large(send_with_headers)
            else:
                timed = receive_with_deadline(receive, now + self._body_read_s, self._body_read_s)
                await self.app(scope, self._limited(timed), send_with_headers)
        finally:
            CURRENT.reset(token)
            path = scope["path"]
            protocol = "v2-http" if path.startswith("/v2/") or path == "/v2" else "http"  # the metrics' label
            self._access.record(protocol, scope["method"], path, status, call)

    def _limited(self, receive: Receive) -> Receive:
        received = 0
        limit = self._max_body

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"Request body is over the limit of {limit} bytes")
            return message

        return limited_receive

    async def _too_large(self, send: Any) -> None:
        body = error_body(f"Request body is over the limit of {self._max_body} bytes")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
