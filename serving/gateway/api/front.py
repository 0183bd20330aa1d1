"""What uvicorn serves: TF Serving's REST API and the v2 protocol's infer as plain ASGI, everything else
through FastAPI.

TF Serving's URLs (under ``/v1/``, except the gateway's own ``/v1/models`` and ``/v1/classify/{name}``)
are the hot path, so they skip FastAPI's per-request machinery (routing, dependency resolution,
request and response objects): one pass over the headers gives the request id, sticky key, API key
and length; ``serving.tfserving.rest`` parses the URL, decodes the body once into arrays, runs the
gateway's one prediction path and writes TF Serving's JSON. FastAPI keeps the friendly API, the
operations routes, ``/docs`` and the OpenAPI document (which declares these routes too). Both branches
give the same headers (``x-request-id``, ``x-servable``, ``x-model-version``, ``x-degraded``), limits,
errors and access-log line. A v2 infer (``POST /v2/models/{name}[/versions/{v}]/infer``) takes the
same path with ``serving.gateway.api.routes.v2.answer_infer`` as its answer.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from serving import tracing
from serving.errors import NotFound, PayloadTooLarge, ServingError, Unimplemented
from serving.gateway.api.openapi import api_routes
from serving.gateway.api.routes import v2 as v2_routes
from serving.gateway.auth import ApiKeys
from serving.gateway.config import Settings
from serving.gateway.context import CallContext, new_request_id
from serving.gateway.service import Gateway
from serving.gateway.v2 import V2
from serving.tfserving import rest, urls
from serving.tfserving.encode import error_body

log = logging.getLogger("tensorgate.gateway")

_JSON = (b"content-type", b"application/json")
_BINARY = (b"content-type", b"application/octet-stream")
_V2_INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
Header = tuple[bytes, bytes]
Answer = tuple[bytes, Header, tuple[Header, ...]]  # a 200's body, content-type header and extra headers
Handler = Callable[[Scope, Receive, CallContext], Awaitable[Answer]]
_CLOSE = (b"connection", b"close")
_CHALLENGE = (b"www-authenticate", b"ApiKey")


class GatewayApp:
    """The ASGI app of the gateway's HTTP port. ``framework_routes``: (path pattern, methods) of the
    FastAPI routes that live under ``/v1/`` (they are not TF Serving's)."""

    def __init__(
        self,
        fastapi: FastAPI,
        gateway: Gateway,
        settings: Settings,
        keys: ApiKeys,
        framework_routes: list[tuple[re.Pattern[str], set[str]]],
    ) -> None:
        self.fastapi = fastapi
        self.state = fastapi.state
        self._gateway = gateway
        self._access = gateway.access
        self._keys = keys
        self._key_header = keys.header.encode("latin-1")
        self._request_key = settings.request_key_header.lower().encode("latin-1")
        self._request_s = settings.timeouts.request_s
        self._body_read_s = settings.timeouts.body_read_s
        self._max_body = settings.limits.max_body_bytes
        self._too_large = f"Request body is over the limit of {self._max_body} bytes"
        self._framework = framework_routes
        self._v2: V2 = fastapi.state.v2
        self._entry: ASGIApp = self._dispatch

    def wrap(self, middleware: Callable[..., ASGIApp], **options: Any) -> None:
        """Put an ASGI middleware around everything (both branches), e.g. CORS."""
        self._entry = middleware(self._entry, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if urls.is_tf_serving_path(path) and not self._is_framework(scope):
                await self._serve(scope, receive, send, "http", self._tf_serving)
                return
            if path.startswith("/v2/models/") and path.endswith("/infer") and scope["method"] == "POST":
                await self._serve(scope, receive, send, "v2-http", self._v2_infer)
                return
        await self.fastapi(scope, receive, send)

    def _is_framework(self, scope: Scope) -> bool:
        method, path = scope["method"], scope["path"]
        return any(method in methods and pattern.match(path) for pattern, methods in self._framework)

    async def _tf_serving(self, scope: Scope, receive: Receive, call: CallContext) -> Answer:
        method = scope["method"]
        rest_call = urls.parse(method, urls.raw_path(scope))
        call.method = rest_call.verb
        if rest_call.verb in ("classify", "regress"):  # before the body: TF Serving's 501, not a 400
            raise Unimplemented(f"The gateway answers :predict only, not :{rest_call.verb}")
        body = b""
        if method == "POST":
            body = await rest.read_body(receive, self._max_body, self._body_read_s, self._too_large)
        return await rest.answer(self._gateway, rest_call, body, call), _JSON, ()

    async def _v2_infer(self, scope: Scope, receive: Receive, call: CallContext) -> Answer:
        call.method = "infer"
        match = _V2_INFER.fullmatch(urls.raw_path(scope))
        if match is None:
            raise NotFound(f"No v2 route for {scope['path']}")
        name, version = unquote(match[1]), unquote(match[2] or "")
        header_length = encoding = None
        for key, value in scope["headers"]:
            if key == b"inference-header-content-length":
                header_length = value
            elif key == b"content-encoding":
                encoding = value
        body = await rest.read_body(receive, self._max_body, self._body_read_s, self._too_large)
        payload, json_length = await v2_routes.answer_infer(
            self._v2, name, version, body, header_length, call, encoding
        )
        if json_length is None:
            return payload, _JSON, ()
        return payload, _BINARY, ((b"inference-header-content-length", b"%d" % json_length),)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, protocol: str, answer: Handler) -> None:
        """One request through ``answer``, with the limits, key check, errors, headers and access line
        every plain-ASGI route shares; ``protocol`` labels the metrics and the access line."""
        given_id = request_key = length = key = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == self._key_header:
                key = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-request-id":
                given_id = value.decode("latin-1")
            elif name == self._request_key:
                request_key = value.decode("latin-1")
        call = CallContext(new_request_id(given_id), time.monotonic() + self._request_s, request_key)
        extra: tuple[Header, ...] = ()
        content_type = _JSON
        try:
            if length is not None and length.isdigit() and int(length) > self._max_body:
                raise PayloadTooLarge(self._too_large)
            self._keys.check(key, authorization)
            payload, content_type, extra = await answer(scope, receive, call)
            status = 200
        except ServingError as error:
            status, payload = error.http_status, error_body(error.message)
            if status == 401:
                extra = (_CHALLENGE,)
            elif status == 408:  # a client too slow to send its body: the connection is not reused
                extra = (_CLOSE,)
        except Exception:
            log.exception("unhandled error (request %s)", call.request_id)
            status, payload = 500, error_body("Internal error")
        headers = [content_type, (b"content-length", b"%d" % len(payload)), (b"x-request-id", call.request_id.encode())]
        if call.servable:
            headers.append((b"x-servable", call.servable.encode("utf-8")))
            if call.version:
                headers.append((b"x-model-version", call.version.encode("latin-1")))
        if call.degraded:
            headers.append((b"x-degraded", b"true"))
        headers.append((b"server-timing", tracing.server_timing(call.started, tracing.trace_id())))
        headers.extend(extra)
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        finally:
            self._access.record(protocol, scope["method"], scope["path"], status, call)


def framework_routes(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    """(path regex, methods) of the app's routes under ``/v1/``: requests for them go to FastAPI."""
    return [
        (route.path_regex, set(route.methods or ()))
        for route in api_routes(app.routes)
        if urls.is_tf_serving_path(route.path)
    ]
