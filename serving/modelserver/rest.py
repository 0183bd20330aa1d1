"""REST front end: TF Serving's HTTP API (``serving.tfserving``) over the model server, as a small ASGI
app served by uvicorn.

Every answer is JSON; errors are ``{"error": "..."}`` with TF Serving's status -> HTTP mapping. Bodies
over ``max_body_bytes`` get 413; a body not received within the REST timeout gets 408 (and the
connection is closed); a call that outlasts the timeout gets 504.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from serving.errors import DeadlineExceeded, NotFound, PayloadTooLarge, ServingError
from serving.modelserver import inference
from serving.modelserver.service import ModelServer
from serving.predict import ModelSpec, Predict, Prediction
from serving.tfserving import rest, urls
from serving.tfserving.encode import error_body

log = logging.getLogger("serving.modelserver")

JSON_HEADERS = [rest.JSON_HEADER]
CLOSE_HEADERS = [*JSON_HEADERS, (b"connection", b"close")]

Scope = dict[str, Any]
Receive = rest.Receive
Send = rest.Send


class Models:
    """The model server as TF Serving's REST API sees it (``serving.tfserving.rest.Backend``)."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def input_dtypes(self, spec: ModelSpec, context: Any) -> Mapping[str, int]:
        with self.server.manager.handle(spec.name, spec.version, spec.label) as entry:
            _, signature = inference.rest_signature_for(entry.runtime, spec.signature)
            return {alias: tensor.dtype for alias, tensor in signature.inputs.items()}

    async def predict(self, request: Predict, context: Any) -> Prediction:
        return await self.server.predict_arrays(request)

    async def status(self, request: Any, context: Any) -> Any:
        return self.server.model_status(request)

    async def metadata(self, request: Any, context: Any) -> Any:
        return self.server.metadata(request)

    async def classify(self, request: Any, context: Any) -> Any:
        return await self.server.classify(request)

    async def regress(self, request: Any, context: Any) -> Any:
        return await self.server.regress(request)


class RestApp:
    def __init__(
        self,
        server: ModelServer,
        timeout_ms: int = 30000,
        max_body_bytes: int = 64 * 1024 * 1024,
        metrics_path: str | None = None,
    ) -> None:
        self.server = server
        self.models = Models(server)
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        self.max_body_bytes = max_body_bytes
        self.metrics_path = metrics_path
        self._too_large = f"Request body is larger than the limit of {max_body_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if self.metrics_path and path == self.metrics_path and method == "GET":
            body = self.server.metrics.expose()
            await rest.respond(send, 200, body, [(b"content-type", b"text/plain; version=0.0.4")])
            return
        started = time.perf_counter()
        call: urls.RestCall | None = None
        try:
            length = rest.declared_length(scope["headers"])
            if length is not None and length > self.max_body_bytes:  # the body may never come
                raise PayloadTooLarge(self._too_large)
            body = await rest.read_body(receive, self.max_body_bytes, self.timeout, self._too_large)
            raw = urls.raw_path(scope)
            if not urls.is_tf_serving_path(raw):
                raise NotFound(f"Not found: {method} {raw}")
            call = urls.parse(method, raw)
            answer = rest.answer(self.models, call, body, None, self.server.executor)
            status, payload = 200, await asyncio.wait_for(answer, self.timeout)
        except TimeoutError:
            error: ServingError = DeadlineExceeded("Deadline Exceeded")
            status, payload = error.http_status, error_body(error.message)
        except ServingError as error:
            status, payload = error.http_status, error_body(error.message)
        except Exception:
            log.exception("REST %s %s failed", method, path)
            status, payload = 500, error_body("Internal error; see the server log")
        if call is not None:
            metrics = self.server.metrics
            metrics.request_count.inc(call.name, "OK" if status == 200 else str(status))
            latency = (time.perf_counter() - started) * 1e6
            metrics.request_latency.observe(latency, call.name, call.verb, "REST")
        await rest.respond(send, status, payload, JSON_HEADERS if status != 408 else CLOSE_HEADERS)
