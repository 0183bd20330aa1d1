"""REST front end: TF Serving's HTTP API as a small ASGI app (served by uvicorn).

URLs follow TF Serving's regexes (http_rest_api_util.cc), case-insensitive:
``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:(predict|classify|regress)`` and
``GET /v1/models/{name}[/versions/{v}|/labels/{l}][/metadata]``. Every answer is JSON; errors are
``{"error": "..."}`` with TF Serving's status -> HTTP mapping. Bodies over ``max_body_bytes`` get 413;
a body not received within the REST timeout gets 408 (and the connection is closed).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from google.protobuf import json_format

from serving import protos, restjson
from serving.errors import DeadlineExceeded, InvalidInput, NotFound, PayloadTooLarge, ServingError
from serving.http_timeouts import receive_with_deadline
from serving.modelserver import inference
from serving.modelserver.service import ModelServer

log = logging.getLogger("serving.modelserver")

PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE,
)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE
)
JSON_HEADERS = [(b"content-type", b"application/json")]
CLOSE_HEADERS = [*JSON_HEADERS, (b"connection", b"close")]
# Bodies bigger than this are decoded and encoded in a worker thread, off the event loop.
OFFLOAD_BYTES = 64 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RestApp:
    def __init__(
        self,
        server: ModelServer,
        timeout_ms: int = 30000,
        max_body_bytes: int = 64 * 1024 * 1024,
        metrics_path: str | None = None,
    ) -> None:
        self.server = server
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        self.max_body_bytes = max_body_bytes
        self.metrics_path = metrics_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if self.metrics_path and path == self.metrics_path and method == "GET":
            body = self.server.metrics.expose()
            await _respond(send, 200, body, [(b"content-type", b"text/plain; version=0.0.4")])
            return
        started = time.perf_counter()
        model_name, api = "", "rest"
        try:
            _check_declared_length(scope, self.max_body_bytes)
            if self.timeout is not None:  # a client sending its body a byte at a time must not hold on
                receive = receive_with_deadline(receive, time.monotonic() + self.timeout, self.timeout)
            body = await _read_body(receive, self.max_body_bytes)
            model_name, api, call = self._route(method, path, body)
            output = await asyncio.wait_for(call, self.timeout)
            status, payload = 200, output
        except TimeoutError:
            error: ServingError = DeadlineExceeded("Deadline Exceeded")
            status, payload = error.http_status, restjson.error_body(error.message)
        except ServingError as error:
            status, payload = error.http_status, restjson.error_body(error.message)
        except Exception:
            log.exception("REST %s %s failed", method, path)
            status, payload = 500, restjson.error_body("Internal error; see the server log")
        if model_name:
            code = "OK" if status == 200 else str(status)
            self.server.metrics.request_count.inc(model_name, code)
            self.server.metrics.request_latency.observe((time.perf_counter() - started) * 1e6, model_name, api, "REST")
        await _respond(send, status, payload, JSON_HEADERS if status != 408 else CLOSE_HEADERS)

    def _route(self, method: str, path: str, body: bytes) -> tuple[str, str, Awaitable[bytes]]:
        if not path.lower().startswith("/v1/"):
            raise NotFound(f"Not found: {method} {path}")
        if method == "POST":
            match = PREDICTION_PATH.fullmatch(path)
            if match:
                name, version, label = _model_target(match)
                verb = match.group(4).lower()
                handler = {"predict": self._predict, "classify": self._classify, "regress": self._regress}[verb]
                return name, verb, handler(name, version, label, body)
        elif method == "GET":
            match = STATUS_PATH.fullmatch(path)
            if match:
                name, version, label = _model_target(match)
                if not name:
                    raise InvalidInput("Missing model name in request.")
                if match.group(4):
                    return name, "metadata", self._metadata(name, version, label)
                return name, "status", self._status(name, version, label)
        raise InvalidInput(f"Malformed request: {method} {path}")

    async def _offload(self, function: Callable[..., Any], size: int, *args: Any) -> Any:
        if size < OFFLOAD_BYTES:
            return function(*args)
        return await asyncio.get_running_loop().run_in_executor(self.server.executor, function, *args)

    async def _predict(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        document = await self._offload(restjson.parse_json_object, len(body), body)
        signature_name = restjson.signature_name_of(document)
        with self.server.manager.handle(name, version, label) as entry:
            _, signature = inference.rest_signature_for(entry.runtime, signature_name)
            dtypes = {alias: spec.dtype for alias, spec in signature.inputs.items()}
            request = await self._offload(restjson.decode_predict_request, len(body), document, dtypes)
            _, signature = inference.signature_for(entry.runtime, request.signature_name)
            aliases = sorted(signature.outputs)
            outputs = await self.server.run_predict(entry, signature, request.inputs, aliases)
        size = sum(array.size for array in outputs.values()) * 8
        encoded: bytes = await self._offload(restjson.encode_predict_response, size, outputs, request.request_format)
        return encoded

    async def _classify(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        request = protos.ClassificationRequest()
        self._fill_examples(request, name, version, label, body)
        response = await self.server.classify(request)
        results = [
            [(c.label, c.score) for c in classifications.classes] for classifications in response.result.classifications
        ]
        return restjson.encode_classification_results(results)

    async def _regress(self, name: str, version: int | None, label: str | None, body: bytes) -> bytes:
        request = protos.RegressionRequest()
        self._fill_examples(request, name, version, label, body)
        response = await self.server.regress(request)
        return restjson.encode_regression_results([r.value for r in response.result.regressions])

    @staticmethod
    def _fill_examples(request: Any, name: str, version: int | None, label: str | None, body: bytes) -> None:
        _fill_spec(request.model_spec, name, version, label)
        document = restjson.parse_json_object(body)
        signature_name, examples, context = restjson.decode_examples(document)
        request.model_spec.signature_name = signature_name
        if context is not None:
            request.input.example_list_with_context.context.CopyFrom(context)
            request.input.example_list_with_context.examples.extend(examples)
        else:
            request.input.example_list.examples.extend(examples)

    async def _metadata(self, name: str, version: int | None, label: str | None) -> bytes:
        request = protos.GetModelMetadataRequest(metadata_field=["signature_def"])
        _fill_spec(request.model_spec, name, version, label)
        response = self.server.metadata(request)
        signature_defs = protos.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        model_spec = _to_json(response.model_spec, preserve_names=True)
        signature_json = _to_json(signature_defs, preserve_names=True)
        # TF Serving concatenates the two parts itself (http_rest_api_util.cc ToJsonString).
        text = f'{{\n"model_spec":{model_spec},\n"metadata": {{"signature_def": {signature_json}}}\n}}\n'
        return text.encode()

    async def _status(self, name: str, version: int | None, label: str | None) -> bytes:
        request = protos.GetModelStatusRequest()
        _fill_spec(request.model_spec, name, version, label)
        return _to_json(self.server.model_status(request), preserve_names=False).encode()


def _to_json(message: Any, preserve_names: bool) -> str:
    return json_format.MessageToJson(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=preserve_names,
        indent=1,
        descriptor_pool=protos.POOL,
    )


def _model_target(match: re.Match[str]) -> tuple[str, int | None, str | None]:
    name = unquote(match.group(1) or "")
    version_text, label = match.group(2), match.group(3)
    version = None
    if version_text:
        version = int(version_text)
        if version >= 2**63:
            raise InvalidInput(f"Failed to convert version: {version_text} to numeric.")
    return name, version, unquote(label) if label else None


def _fill_spec(spec: Any, name: str, version: int | None, label: str | None) -> None:
    spec.name = name
    if version is not None:
        spec.version.value = version
    if label is not None:
        spec.version_label = label


def _check_declared_length(scope: Scope, limit: int) -> None:
    """Refuse a Content-Length over the limit before reading (the body may never come)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("Client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
