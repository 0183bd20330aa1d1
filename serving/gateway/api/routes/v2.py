"""The Open Inference Protocol's REST API (KServe v2): health, server and model metadata, readiness, infer.

``/v2/health/live`` and ``/v2/health/ready`` need no API key (they are probes, like ``/healthz``);
everything else does. Errors are the protocol's ``{"error": "..."}`` with the gateway's statuses.
``infer`` takes JSON tensors or the binary tensor data extension (``Inference-Header-Content-Length``).
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from serving.gateway.api.deps import API_KEY, CallDep
from serving.gateway.api.errors import JSON, error_response
from serving.gateway.api.openapi import errors, json_body
from serving.gateway.context import CallContext
from serving.gateway.v2 import V2
from serving.v2 import datatypes, metadata, rest

router = APIRouter(tags=["Open Inference Protocol (KServe v2)"])
keyed = APIRouter(dependencies=[API_KEY], tags=["Open Inference Protocol (KServe v2)"])


async def get_v2(request: Request) -> V2:
    v2: V2 = request.app.state.v2
    return v2


V2Dep = Annotated[V2, Depends(get_v2)]
Name = Annotated[str, Path(description="servable, variant, route or ensemble")]
Version = Annotated[str, Path(description="a version number, or a TF Serving version label such as stable")]

_TENSOR_METADATA = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"enum": list(datatypes.ALL)},
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "-1: any size"},
    },
}
_MODEL_METADATA = {
    "type": "object",
    "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "platform": {"type": "string"},
        "inputs": {"type": "array", "items": _TENSOR_METADATA},
        "outputs": {"type": "array", "items": _TENSOR_METADATA},
    },
}
_SERVER_METADATA = {
    "type": "object",
    "required": ["name", "version", "extensions"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "extensions": {"type": "array", "items": {"type": "string"}},
    },
}
_PARAMETERS = {"type": "object", "additionalProperties": True}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"enum": list(datatypes.ALL)},
        "parameters": {
            **_PARAMETERS,
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            "description": "binary_data_size: this tensor's bytes follow the JSON header (binary extension)",
        },
        "data": {"description": "the elements in row-major order, flat or nested"},
    },
}
_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            **_PARAMETERS,
            "description": "binary_data_output (all outputs as binary data), timeout (microseconds), "
            "signature_name (TF Serving signature; default serving_default)",
        },
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "parameters": {**_PARAMETERS, "properties": {"binary_data": {"type": "boolean"}}},
                },
            },
        },
    },
}
_INFER_RESPONSE = {
    "type": "object",
    "required": ["model_name", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": _TENSOR},
    },
}
_BINARY_NOTE = (
    "With the binary tensor data extension the body is a JSON header of Inference-Header-Content-Length "
    "bytes followed by the binary data of the inputs that declare binary_data_size, in their order; an "
    "answer with binary outputs has the same layout and header."
)
_INFER_DOC: dict[str, Any] = {
    "description": _BINARY_NOTE,
    "responses": {
        200: {
            "description": "The outputs (JSON, or a JSON header and binary data)",
            "content": {"application/json": {"schema": _INFER_RESPONSE}, "application/octet-stream": {}},
        },
        **errors(400, 404, 413, 429, 503, 504),
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _INFER_REQUEST},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "parameters": [
            {
                "name": "Inference-Header-Content-Length",
                "in": "header",
                "required": False,
                "schema": {"type": "integer", "minimum": 1},
                "description": "length of the JSON header when binary data follows it",
            }
        ],
    },
}
_READY = {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}}
_LIVE = {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}}


def _json(document: dict[str, Any]) -> Response:
    return Response(orjson.dumps(document), media_type=JSON)


@router.get("/v2/health/live", summary="Server live", responses=json_body(_LIVE))
async def live(call: CallDep) -> Response:
    call.method = "v2_health"
    return _json({"live": True})


@router.get(
    "/v2/health/ready",
    summary="Server ready: every servable AVAILABLE upstream (400 with the reason if not)",
    responses={**json_body(_READY), **errors(400)},
)
async def ready(v2: V2Dep, call: CallDep) -> Response:
    call.method = "v2_health"
    is_ready, reason = v2.server_ready()
    if not is_ready:
        return error_response(400, f"Not ready: {reason}")
    return _json({"ready": True})


@keyed.get("/v2", summary="Server metadata", responses=json_body(_SERVER_METADATA))
async def server_metadata(call: CallDep) -> Response:
    call.method = "v2_metadata"
    return _json(V2.server_metadata())


async def _model_metadata(v2: V2, name: str, version: str, call: CallContext) -> Response:
    call.method = "v2_metadata"
    versions, platform, signature = await v2.model_metadata(name, version, call)
    return _json(metadata.model_metadata(name, versions, platform, signature))


async def _model_ready(v2: V2, name: str, version: str, call: CallContext) -> Response:
    call.method = "v2_ready"
    if not await v2.model_ready(name, version, call):
        what = f"version {version} of model '{name}'" if version else f"model '{name}'"
        return error_response(400, f"{what} has no AVAILABLE version upstream")
    return _json({"name": name, "ready": True})


async def _infer(v2: V2, name: str, version: str, request: Request, call: CallContext) -> Response:
    body = await request.body()
    headers = request.headers
    length, encoding = headers.get(rest.HEADER_LENGTH), headers.get("content-encoding")
    return infer_response(*await answer_infer(v2, name, version, body, length, call, encoding))


async def answer_infer(
    v2: V2,
    name: str,
    version: str,
    body: bytes,
    header_length: str | bytes | None,
    call: CallContext,
    encoding: str | bytes | None = None,
) -> tuple[bytes, int | None]:
    """The answer body of an infer request and, when it carries binary outputs, its JSON header's length.
    ``encoding``: the request's Content-Encoding (gzip and deflate bodies are inflated first)."""
    call.method = "infer"
    if encoding is not None:
        body = rest.decompress(body, encoding, v2.max_body)
    request = rest.decode_request(body, header_length, name, version)
    model_version, outputs = await v2.infer(request, call)
    binary = {output.name: output.binary for output in request.outputs or ()}
    encoded = [
        (output, datatype, array, request.binary_outputs if binary.get(output) is None else bool(binary[output]))
        for output, datatype, array in outputs
    ]
    return rest.encode_response(name, model_version, request.id, encoded)


def infer_response(body: bytes, header_length: int | None) -> Response:
    if header_length is None:
        return Response(body, media_type=JSON)
    return Response(body, media_type=rest.BINARY, headers={"Inference-Header-Content-Length": str(header_length)})


_METADATA_DOC: dict[str, Any] = {"responses": {**json_body(_MODEL_METADATA), **errors(400, 404, 503, 504)}}
_READY_DOC: dict[str, Any] = {"responses": {**json_body(_READY), **errors(400, 404, 503, 504)}}


@keyed.get("/v2/models/{name}", summary="Model metadata", **_METADATA_DOC)
async def model_metadata(name: Name, v2: V2Dep, call: CallDep) -> Response:
    return await _model_metadata(v2, name, "", call)


@keyed.get("/v2/models/{name}/versions/{version}", summary="Model metadata of a version", **_METADATA_DOC)
async def version_metadata(name: Name, version: Version, v2: V2Dep, call: CallDep) -> Response:
    return await _model_metadata(v2, name, version, call)


@keyed.get("/v2/models/{name}/ready", summary="Model ready (400 if not)", **_READY_DOC)
async def model_ready(name: Name, v2: V2Dep, call: CallDep) -> Response:
    return await _model_ready(v2, name, "", call)


@keyed.get("/v2/models/{name}/versions/{version}/ready", summary="Model version ready (400 if not)", **_READY_DOC)
async def version_ready(name: Name, version: Version, v2: V2Dep, call: CallDep) -> Response:
    return await _model_ready(v2, name, version, call)


@keyed.post("/v2/models/{name}/infer", summary="Inference", **_INFER_DOC)
async def infer(name: Name, request: Request, v2: V2Dep, call: CallDep) -> Response:
    return await _infer(v2, name, "", request, call)


@keyed.post("/v2/models/{name}/versions/{version}/infer", summary="Inference on a version", **_INFER_DOC)
async def version_infer(name: Name, version: Version, request: Request, v2: V2Dep, call: CallDep) -> Response:
    return await _infer(v2, name, version, request, call)
