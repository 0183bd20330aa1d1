"""TF Serving's REST API as the OpenAPI document declares it.

``/v1/models/{name}[/versions/{v}|/labels/{l}][:predict|/metadata]`` and TF Serving's answer to any other
URL under ``/v1/`` are served by the plain ASGI front (``serving.gateway.api.front``, on
``serving.tfserving``), not by FastAPI's router: these routes exist so ``/openapi.json`` and ``/docs``
describe them (``create_app`` hands them to the schema only). Their endpoints are never called.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.responses import Response

from serving.gateway.api.deps import API_KEY
from serving.gateway.api.openapi import errors, json_body

router = APIRouter(dependencies=[API_KEY], tags=["TF Serving REST API"])

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


async def _by_name(name: Name) -> Response:
    raise NotImplementedError("served by serving.gateway.api.front")  # pragma: no cover


async def _by_version(name: Name, version: Version) -> Response:
    raise NotImplementedError("served by serving.gateway.api.front")  # pragma: no cover


async def _by_label(name: Name, label: Label) -> Response:
    raise NotImplementedError("served by serving.gateway.api.front")  # pragma: no cover


async def tf_serving_post(path: str) -> Response:
    raise NotImplementedError("served by serving.gateway.api.front")  # pragma: no cover


async def tf_serving_get(path: str) -> Response:
    raise NotImplementedError("served by serving.gateway.api.front")  # pragma: no cover


for _suffix, _id, _handler in (
    ("", "", _by_name),
    ("/versions/{version}", "_version", _by_version),
    ("/labels/{label}", "_label", _by_label),
):
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
router.add_api_route(
    "/v1/{path:path}",
    tf_serving_post,
    methods=["POST"],
    summary="TF Serving URL dispatch (POST)",
    description=_OTHER_DOC,
    responses={**json_body({"type": "object"}), **errors(400, 404, 413, 429, 501, 503, 504)},
)
router.add_api_route(
    "/v1/{path:path}",
    tf_serving_get,
    methods=["GET"],
    summary="TF Serving URL dispatch (GET)",
    description=_OTHER_DOC,
    responses={**json_body({"type": "object"}), **_LOOKUP_ERRORS},
)
