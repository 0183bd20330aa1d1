"""TF Serving's REST API over any backend: the model server's own models, or the gateway's upstreams.

A server reads the body (``read_body``), parses the URL (``urls.parse``) and calls ``answer``, which
decodes the JSON once into a ``serving.predict.Predict`` (named arrays plus the model spec), hands it
to the backend's one prediction path, and writes the arrays back as TF Serving's JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import Executor
from typing import Any, Protocol

from serving import protos, tracing
from serving.errors import InvalidInput, PayloadTooLarge, RequestTimeout
from serving.predict import ModelSpec, Predict, Prediction
from serving.tfserving import decode, encode, examples, messages
from serving.tfserving.urls import RestCall

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# Bodies bigger than this are decoded and encoded in a worker thread, off the event loop.
OFFLOAD_BYTES = 64 * 1024
JSON_HEADER = (b"content-type", b"application/json")


class Backend(Protocol):
    """What answers TF Serving's REST calls. ``context`` is the server's own per-request object."""

    async def input_dtypes(self, spec: ModelSpec, context: Any) -> Mapping[str, int]:
        """Input name -> TF DataType number of ``spec``'s signature; REST decoding needs them. A missing
        signature is InvalidInput('Serving signature name: "<name>" not found in signature def')."""

    async def predict(self, request: Predict, context: Any) -> Prediction: ...

    async def status(self, request: Any, context: Any) -> Any:
        """GetModelStatusRequest -> GetModelStatusResponse."""

    async def metadata(self, request: Any, context: Any) -> Any:
        """GetModelMetadataRequest -> GetModelMetadataResponse."""

    async def classify(self, request: Any, context: Any) -> Any:
        """ClassificationRequest -> ClassificationResponse (or Unimplemented)."""

    async def regress(self, request: Any, context: Any) -> Any:
        """RegressionRequest -> RegressionResponse (or Unimplemented)."""


async def answer(
    backend: Backend, call: RestCall, body: bytes, context: Any, executor: Executor | None = None
) -> bytes:
    """The 200 body of ``call``; a ServingError carries TF Serving's status and message otherwise."""
    if call.verb == "predict":
        return await predict(backend, call, body, context, executor)
    if call.verb == "status":
        request = protos.GetModelStatusRequest()
        call.spec().fill(request.model_spec)
        return messages.status_json(await backend.status(request, context))
    if call.verb == "metadata":
        request = protos.GetModelMetadataRequest(metadata_field=["signature_def"])
        call.spec().fill(request.model_spec)
        return messages.metadata_json(await backend.metadata(request, context))
    if call.verb == "classify":
        response = await backend.classify(_examples_request(protos.ClassificationRequest(), call, body), context)
        results = [[(c.label, c.score) for c in item.classes] for item in response.result.classifications]
        return encode.encode_classification_results(results)
    response = await backend.regress(_examples_request(protos.RegressionRequest(), call, body, "regress"), context)
    return encode.encode_regression_results([r.value for r in response.result.regressions])


async def predict(
    backend: Backend, call: RestCall, body: bytes, context: Any, executor: Executor | None = None
) -> bytes:
    pool = executor if executor is not None and len(body) >= OFFLOAD_BYTES else None
    with tracing.span("decode json", {"tensorgate.body_bytes": len(body)}):
        numeric = await _run(pool, decode.NumericBody.read, body)
        parsed = None
        if numeric is not None:
            spec = call.spec(numeric.signature_name)
            parsed = numeric.decode(await backend.input_dtypes(spec, context))
        if parsed is None:
            document = await _run(pool, decode.parse_json_object, body)
            spec = call.spec(decode.signature_name_of(document))
            dtypes = await backend.input_dtypes(spec, context)
            bools = decode.may_hold_bools(body)
            parsed = await _run(pool, decode.decode_predict_request, document, dtypes, bools)
            del document  # thousands of small lists: let them go before waiting for the model
    prediction = await backend.predict(Predict(spec, parsed.inputs), context)
    size = sum(array.size for array in prediction.outputs.values()) * 8
    big = executor is not None and size >= OFFLOAD_BYTES
    encoded: bytes = await _run(
        executor if big else None, encode.encode_predict_response, prediction.outputs, parsed.request_format
    )
    return encoded


async def _run(executor: Executor | None, function: Callable[..., Any], *args: Any) -> Any:
    if executor is None:
        return function(*args)
    return await asyncio.get_running_loop().run_in_executor(executor, function, *args)


def _examples_request(request: Any, call: RestCall, body: bytes, method: str = "classify") -> Any:
    call.spec().fill(request.model_spec)
    document = decode.parse_json_object(body)
    signature_name, items, context = examples.decode_examples(document, method)
    request.model_spec.signature_name = signature_name
    if context is not None:
        request.input.example_list_with_context.context.CopyFrom(context)
        request.input.example_list_with_context.examples.extend(items)
    else:
        request.input.example_list.examples.extend(items)
    return request


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def read_body(receive: Receive, limit: int, seconds: float | None, too_large: str) -> bytes:
    """The whole body within ``seconds`` (else 408), at most ``limit`` bytes (else 413 ``too_large``)."""
    if seconds is None:
        return await _read(receive, limit, too_large)
    try:
        async with asyncio.timeout(seconds):
            return await _read(receive, limit, too_large)
    except TimeoutError:
        raise RequestTimeout(f"Request body not received within {seconds:g} seconds") from None


async def _read(receive: Receive, limit: int, too_large: str) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if message["type"] == "http.request" and not message.get("more_body", False) and len(body) <= limit:
        return body  # the usual case: the body came with the headers
    chunks = [body]
    size = len(body)
    while True:
        if message["type"] == "http.disconnect":
            raise InvalidInput("Client disconnected before sending the whole body")
        if size > limit:
            raise PayloadTooLarge(too_large)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
