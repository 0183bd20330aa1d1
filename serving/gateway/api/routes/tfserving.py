"""TF Serving's REST API, unchanged: ``/v1/models/{name}[/versions/{v}|/labels/{l}][:predict|/metadata]``.

URLs are matched with TF Serving's own regular expressions (case-insensitive; anything else under
``/v1/`` is its ``Malformed request``), bodies go through the shared codec in ``serving.restjson``, and
status/metadata answers are printed with TF Serving's JSON options.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Path, Request
from google.protobuf import json_format
from starlette.responses import Response

from serving import protos, restjson
from serving.errors import Internal, InvalidInput, Unimplemented
from serving.gateway.api.deps import API_KEY, CallDep, GatewayDep
from serving.gateway.api.openapi import errors, json_body
from serving.gateway.context import CallContext
from serving.gateway.service import Gateway
from serving.tensors import from_numpy, to_numpy

router = APIRouter(dependencies=[API_KEY], tags=["TF Serving REST API"])

_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I
)
_STATUS = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)
JSON = "application/json"


def _version(text: str | None) -> int:
    if not text:
        return 0
    try:
        version = int(text)
    except ValueError:
        version = -1
    if not 0 <= version < 2**63:  # an int64 in the protos, as TF Serving's SimpleAtoi
        raise InvalidInput(f"Failed to convert version: {text} to numeric.")
    return version


def _spec(spec: Any, name: str, version: int, label: str | None) -> None:
    spec.name = unquote(name)
    if version:
        spec.version.value = version
    elif label:
        spec.version_label = unquote(label)


# What the URL forms answer, for /openapi.json. Every route below dispatches through ``tf_serving`` on
# the raw URL, so the routes only name the forms; answers are TF Serving's whichever route matched.
_PREDICT_REQUEST: dict[str, Any] = {
    "type": "object",
    "properties": {
        "signature_name": {"type": "string"},
        "instances": {"type": "array", "minItems": 1, "description": "row format: one item per example"},
        "inputs": {"description": "columnar format: one tensor, or an object of named tensors"},
    },
    "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
}
_PREDICT_RESPONSE: dict[str, Any] = {
    "type": "object",
    "oneOf": [
        {"required": ["predictions"], "properties": {"predictions": {"type": "array"}}},
        {"required": ["outputs"]},
    ],
}
_STATUS_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["model_version_status"],
    "properties": {"model_version_status": {"type": "array", "items": {"type": "object"}}},
}
_METADATA_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["model_spec", "metadata"],
    "properties": {"model_spec": {"type": "object"}, "metadata": {"type": "object"}},
}
_LOOKUP_ERRORS = errors(400, 404, 429, 503, 504)
_PREDICT_DOC: dict[str, Any] = {
    "responses": {**json_body(_PREDICT_RESPONSE), **errors(400, 404, 413, 429, 503, 504)},
    "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {"schema": _PREDICT_REQUEST}}}},
}
Name = Annotated[str, Path(description="servable, route or ensemble")]
Version = Annotated[str, Path(json_schema_extra={"pattern": "^[0-9]+$"})]
Label = Annotated[str, Path(description="version label, e.g. stable")]
Handler = Callable[..., Awaitable[Response]]


async def _by_name(name: Name, request: Request, gateway: GatewayDep, call: CallDep) -> Response:
    return await tf_serving(request, gateway, call)


async def _by_version(name: Name, version: Version, request: Request, gateway: GatewayDep, call: CallDep) -> Response:
    return await tf_serving(request, gateway, call)


async def _by_label(name: Name, label: Label, request: Request, gateway: GatewayDep, call: CallDep) -> Response:
    return await tf_serving(request, gateway, call)


_FORMS: tuple[tuple[str, str, Handler], ...] = (
    ("", "", _by_name),
    ("/versions/{version}", "_version", _by_version),
    ("/labels/{label}", "_label", _by_label),
)
for _suffix, _id, _handler in _FORMS:
    _base = "/v1/models/{name}" + _suffix
    router.add_api_route(
        _base + ":predict",
        _handler,
        methods=["POST"],
        operation_id=f"predict{_id}",
        summary="TF Serving Predict",
        **_PREDICT_DOC,
    )
    router.add_api_route(
        _base,
        _handler,
        methods=["GET"],
        operation_id=f"status{_id}",
        summary="TF Serving GetModelStatus",
        responses={**json_body(_STATUS_RESPONSE), **_LOOKUP_ERRORS},
    )
    router.add_api_route(
        _base + "/metadata",
        _handler,
        methods=["GET"],
        operation_id=f"metadata{_id}",
        summary="TF Serving GetModelMetadata (signature_def)",
        responses={**json_body(_METADATA_RESPONSE), **_LOOKUP_ERRORS},
    )

_OTHER_DOC = (
    "Any other URL under /v1/ goes through TF Serving's URL patterns as above; what matches none is TF "
    "Serving's 400 Malformed request. :classify and :regress answer 501 (the model contract has no such "
    "signatures)."
)


@router.post(
    "/v1/{path:path}",
    summary="TF Serving URL dispatch (POST)",
    description=_OTHER_DOC,
    responses={**json_body({"type": "object"}), **errors(400, 404, 413, 429, 501, 503, 504)},
)
async def tf_serving_post(path: str, request: Request, gateway: GatewayDep, call: CallDep) -> Response:
    return await tf_serving(request, gateway, call)


@router.get(
    "/v1/{path:path}",
    summary="TF Serving URL dispatch (GET)",
    description=_OTHER_DOC,
    responses={**json_body({"type": "object"}), **_LOOKUP_ERRORS},
)
async def tf_serving_get(path: str, request: Request, gateway: GatewayDep, call: CallDep) -> Response:
    return await tf_serving(request, gateway, call)


@router.api_route("/v1/{path:path}", methods=["PUT", "DELETE", "PATCH", "OPTIONS"], include_in_schema=False)
async def tf_serving_other(path: str, request: Request, gateway: GatewayDep, call: CallDep) -> Response:
    return await tf_serving(request, gateway, call)


async def tf_serving(request: Request, gateway: Gateway, call: CallContext) -> Response:
    """TF Serving's dispatch: its URL patterns per method, anything else its ``Malformed request``."""
    raw_path = request.scope.get("raw_path", b"").decode("latin-1").partition("?")[0] or request.url.path
    if request.method == "POST":
        match = _PREDICT.fullmatch(raw_path)
        if match:
            name, version, label, verb = match.groups()
            if verb.lower() != "predict":
                raise Unimplemented(f"The gateway answers :predict only, not :{verb.lower()}")
            return await _predict(gateway, call, request, name, _version(version), label)
    elif request.method == "GET":
        match = _STATUS.fullmatch(raw_path)
        if match:
            name, version, label, metadata = match.groups()
            if not name:
                raise InvalidInput("Missing model name in request.")
            if metadata:
                return await _metadata(gateway, call, name, _version(version), label)
            return await _status(gateway, call, name, _version(version), label)
    raise InvalidInput(f"Malformed request: {request.method} {raw_path}")


async def _predict(
    gateway: Gateway, call: CallContext, request: Request, name: str, version: int, label: str | None
) -> Response:
    call.method = "predict"
    document = restjson.parse_json_object(await request.body())
    signature = restjson.signature_name_of(document)
    dtypes = await gateway.input_dtypes(unquote(name), version, unquote(label or ""), signature, call)
    parsed = restjson.decode_predict_request(document, dtypes)
    predict = protos.PredictRequest()
    _spec(predict.model_spec, name, version, label)
    predict.model_spec.signature_name = parsed.signature_name
    for input_name, array in parsed.inputs.items():
        from_numpy(array, out=predict.inputs[input_name])
    response = await gateway.predict(predict, call)
    outputs = {key: to_numpy(tensor) for key, tensor in response.outputs.items()}
    return Response(restjson.encode_predict_response(outputs, parsed.request_format), media_type=JSON)


async def _status(gateway: Gateway, call: CallContext, name: str, version: int, label: str | None) -> Response:
    call.method = "status"
    request = protos.GetModelStatusRequest()
    _spec(request.model_spec, name, version, label)
    response = await gateway.status(request, call)
    text = json_format.MessageToJson(response, indent=1, always_print_fields_with_no_presence=True)
    return Response(text, media_type=JSON)


async def _metadata(gateway: Gateway, call: CallContext, name: str, version: int, label: str | None) -> Response:
    call.method = "metadata"
    request = protos.GetModelMetadataRequest()
    _spec(request.model_spec, name, version, label)
    request.metadata_field.append("signature_def")
    response = await gateway.metadata(request, call)
    return Response(metadata_json(response), media_type=JSON)


def _json(message: Any) -> str:
    return json_format.MessageToJson(
        message, indent=1, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )


def metadata_json(response: Any) -> str:
    """GetModelMetadataResponse as TF Serving prints it (model_spec, then the unpacked SignatureDefMap)."""
    spec = _json(response.model_spec)
    signatures = protos.SignatureDefMap()
    if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(signatures):
        raise Internal("Failed to find 'signature_def' key in the GetModelMetadataResponse metadata map.")
    signature_text = _json(signatures)
    return '{\n"model_spec":' + spec + ',\n"metadata": {"signature_def": ' + signature_text + "}\n}\n"
