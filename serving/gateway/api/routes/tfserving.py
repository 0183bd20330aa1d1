"""TF Serving's REST API, unchanged: ``/v1/models/{name}[/versions/{v}|/labels/{l}][:predict|/metadata]``.

URLs are matched with TF Serving's own regular expressions (case-insensitive; anything else under
``/v1/`` is its ``Malformed request``), bodies go through the shared codec in ``serving.restjson``, and
status/metadata answers are printed with TF Serving's JSON options.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from google.protobuf import json_format
from starlette.responses import Response

from serving import protos, restjson
from serving.errors import Internal, InvalidInput, Unimplemented
from serving.gateway.api.deps import API_KEY, CallDep, GatewayDep
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
        return int(text)
    except ValueError:
        raise InvalidInput(f"Failed to convert version: {text} to numeric.") from None


def _spec(spec: Any, name: str, version: int, label: str | None) -> None:
    spec.name = unquote(name)
    if version:
        spec.version.value = version
    elif label:
        spec.version_label = unquote(label)


@router.post("/v1/{path:path}", summary="TF Serving predict: /v1/models/{name}[/versions/{v}|/labels/{l}]:predict")
async def tf_serving_post(path: str, request: Request, gateway: GatewayDep, call: CallDep) -> Response:
    return await tf_serving(request, gateway, call)


@router.get("/v1/{path:path}", summary="TF Serving status and metadata: /v1/models/{name}[/versions/{v}][/metadata]")
async def tf_serving_get(path: str, request: Request, gateway: GatewayDep, call: CallDep) -> Response:
    return await tf_serving(request, gateway, call)


@router.api_route("/v1/{path:path}", methods=["PUT", "DELETE", "PATCH"], include_in_schema=False)
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
