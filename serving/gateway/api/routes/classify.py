"""The friendly API: classify images sent as uploads, base64 strings or pixel arrays.

``POST /v1/classify/{name}`` where name is a servable, a route or an ensemble, with one of:
multipart/form-data (one or more image files), a raw ``image/png`` / ``image/jpeg`` body, or JSON
``{"image": ...}`` / ``{"images": [...]}`` whose items are base64 strings (data URLs too) or pixel
arrays (28x28 or 784 values, 0..255). Pictures are prepared as docs/pictures.md says (the same
steps as the SavedModels' ``serving_bytes`` signature); ``?debug=1`` adds the 28x28 the model saw.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from serving import tracing
from serving.errors import InvalidInput
from serving.gateway import images
from serving.gateway.api.deps import API_KEY, CallDep, GatewayDep
from serving.gateway.api.errors import JSON
from serving.gateway.api.openapi import errors, json_body
from serving.gateway.ensembles import MemberAnswer
from serving.gateway.service import Gateway
from serving.predict import ModelSpec, Predict, Prediction

router = APIRouter(dependencies=[API_KEY], tags=["classify"])

_OFF_LOOP_BYTES = 256 * 1024  # decode bigger inputs in a worker thread
_IMAGE = {
    "description": "base64 PNG/JPEG (a data URL too), or a pixel array: 784 values or [height][width] "
    "(optionally x1, x3 or x4 channels), values 0..255",
    "oneOf": [{"type": "string"}, {"type": "array", "minItems": 1}],
}
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "oneOf": [
                        {"required": ["image"], "properties": {"image": _IMAGE}},
                        {
                            "required": ["images"],
                            "not": {"required": ["image"]},
                            "properties": {"images": {"type": "array", "minItems": 1, "items": _IMAGE}},
                        },
                    ],
                },
                "example": {"images": ["<base64 PNG>", [[0] * 28] * 28]},
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_PREPARED = {
    "type": ["object", "null"],
    "description": "what preparation did (docs/pictures.md)",
    "properties": {
        "orientation": {"type": "integer", "description": "EXIF orientation applied (1: none)"},
        "alpha_background": {"type": ["string", "null"], "enum": ["black", "white", None]},
        "background": {"type": "integer", "description": "background level 0..255 (median of the border)"},
        "inverted": {"type": "boolean"},
        "dataset_style": {"type": "boolean", "description": "a 28x28 on a dark background: used unchanged"},
        "box": {"type": ["array", "null"], "items": {"type": "integer"}, "description": "object: x, y, width, height"},
        "scaled_to": {"type": ["array", "null"], "items": {"type": "integer"}, "description": "width, height"},
        "padded": {"type": ["array", "null"], "items": {"type": "integer"}, "description": "left, top, right, bottom"},
    },
}
_CONVERSION = {
    "type": "object",
    "required": ["source", "width", "height", "mode", "converted", "prepared"],
    "properties": {
        "source": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "mode": {"type": "string"},
        "converted": {"type": "array", "items": {"type": "string"}},
        "prepared": _PREPARED,
        "model_input": {"type": "string", "description": "with ?debug=1: the 28x28 the model saw, PNG data URL"},
    },
}
_ANSWER = {
    "type": "object",
    "required": ["model", "servable", "version", "degraded", "predictions", "conversions"],
    "properties": {
        "model": {"type": "string"},
        "servable": {"type": "string"},
        "version": {"type": "string"},
        "degraded": {"type": "boolean"},
        "predictions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "class_id", "score", "probabilities"],
                "properties": {
                    "label": {"type": "string"},
                    "class_id": {"type": "integer"},
                    "score": {"type": "number"},
                    "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
                },
            },
        },
        "conversions": {"type": "array", "items": _CONVERSION},
        "members": {"type": "array", "items": {"type": "object"}},
    },
}


async def _items(request: Request, max_batch: int) -> list[Any]:
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form(max_files=max_batch + 1, max_fields=max_batch + 1)
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            raise InvalidInput("No image file in the form: send one or more files, e.g. -F file=@image.png")
        return [await upload.read() for upload in uploads]
    body = await request.body()
    if content_type.startswith("image/"):
        return [body]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput("The body is neither JSON nor an image upload") from None
    if isinstance(document, dict) and "image" in document:
        return [document["image"]]
    if isinstance(document, dict) and isinstance(document.get("images"), list):
        return list(document["images"])
    raise InvalidInput('Send {"image": ...} or {"images": [...]} (base64 strings or pixel arrays)')


def _decode(item: Any, max_pixels: int) -> tuple[np.ndarray, images.Conversion]:
    if isinstance(item, bytes):
        return images.from_bytes(item, max_pixels)
    if isinstance(item, str):
        return images.from_base64(item, max_pixels)
    if isinstance(item, list):
        return images.from_pixels(item, max_pixels)
    raise InvalidInput("Each image must be a base64 string or a pixel array")


def _decode_all(items: list[Any], max_pixels: int) -> list[tuple[np.ndarray, images.Conversion]]:
    return [_decode(item, max_pixels) for item in items]


@router.post(
    "/v1/classify/{name}",
    summary="Classify images (PNG/JPEG, base64 or pixel arrays), prepared like the training data",
    openapi_extra=_BODY_DOC,
    responses={**json_body(_ANSWER), **errors(400, 404, 413, 429, 503, 504)},
)
async def classify(
    name: str,
    request: Request,
    gateway: GatewayDep,
    call: CallDep,
    debug: Annotated[bool, Query(description="also return the 28x28 the model saw (PNG data URL)")] = False,
) -> Response:
    call.method = "classify"
    limits = gateway.settings.limits
    items = await _items(request, limits.max_batch_size)
    if not items:
        raise InvalidInput("No images to classify")
    if len(items) > limits.max_batch_size:
        raise InvalidInput(f"{len(items)} images are over the batch limit of {limits.max_batch_size}")
    size = sum(len(item) for item in items if isinstance(item, bytes | str))
    with tracing.span("decode images", {"tensorgate.images": len(items)}):
        if size > _OFF_LOOP_BYTES:
            decoded = await asyncio.to_thread(_decode_all, items, limits.max_image_pixels)
        else:
            decoded = _decode_all(items, limits.max_image_pixels)
    request_arrays = Predict(ModelSpec(name), {"image": np.stack([array for array, _ in decoded])})
    prediction, members = await gateway.predict_with_votes(request_arrays, call)
    answer = _answer(gateway, name, prediction, members, decoded, call)
    if debug:
        for report, (array, _) in zip(answer["conversions"], decoded, strict=True):
            report["model_input"] = images.png_data_url(array)
    return Response(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON)


def _answer(
    gateway: Gateway,
    name: str,
    prediction: Prediction,
    members: list[MemberAnswer] | None,
    decoded: list[tuple[np.ndarray, images.Conversion]],
    call: Any,
) -> dict[str, Any]:
    outputs = prediction.outputs
    if "probabilities" not in outputs:
        raise InvalidInput(f"{name!r} did not return 'probabilities'; the classify API needs the model contract")
    probabilities = outputs["probabilities"]
    class_ids = outputs["class_id"] if "class_id" in outputs else probabilities.argmax(axis=-1)
    label_source = next((m for m in members or () if m.error is None), None)
    servable, version = (label_source.servable, label_source.version) if label_source else (call.servable, call.version)
    labels = gateway.catalog.labels(servable, version, probabilities.shape[-1])
    predictions = []
    for row, class_id in zip(probabilities, class_ids.tolist(), strict=True):
        predictions.append(
            {
                "label": labels[class_id],
                "class_id": class_id,
                "score": row[class_id],
                "probabilities": dict(zip(labels, row, strict=True)),
            }
        )
    answer: dict[str, Any] = {
        "model": name,
        "servable": call.servable,
        "version": call.version,
        "degraded": call.degraded,
        "predictions": predictions,
        "conversions": [conversion.report() for _, conversion in decoded],
    }
    if members is not None:
        answer["members"] = [
            {
                "servable": member.servable,
                "version": member.version,
                "labels": [labels[i] for i in member.class_ids] if member.class_ids is not None else None,
                "error": member.error,
            }
            for member in members
        ]
    return answer
