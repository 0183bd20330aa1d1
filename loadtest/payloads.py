"""Request bodies built once from real Fashion-MNIST test images, and the checks of their answers.

Every load generator in this package (the locustfile's users, the runner's readiness probe, the tests)
sends the same pre-encoded bodies, so no target pays for encoding on the client side and every target
sees the same images. A payload knows the labels of its images, so an answer can be checked for the
right shape and the right class.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from training.data import load_split, locate

KINDS = ("instances", "b64", "multipart", "grpc", "v2-json", "v2-binary", "v2-grpc")
GRPC_KINDS = ("grpc", "v2-grpc")
# gRPC method of each gRPC payload kind
GRPC_METHODS = {
    "grpc": "/tensorflow.serving.PredictionService/Predict",
    "v2-grpc": "/inference.GRPCInferenceService/ModelInfer",
}
BOUNDARY = "tensorgate-loadtest-boundary"


class AnswerError(Exception):
    """An answer that is not a prediction of the expected shape (a failure, unlike a wrong class)."""


@dataclass(frozen=True)
class Payload:
    """One request body (or serialized PredictRequest / ModelInferRequest for gRPC) and the labels of
    its images; ``headers`` are extra HTTP headers the body needs (the v2 binary extension's length)."""

    body: bytes
    content_type: str
    labels: tuple[int, ...]
    headers: tuple[tuple[str, str], ...] = ()


@lru_cache(maxsize=2)
def test_images(count: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` Fashion-MNIST test images (uint8 [n, 28, 28]) and labels (int [n])."""
    images, labels = load_split(locate("fashion_mnist"), "test")
    return images[:count], labels[:count].astype(np.int64)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def path_for(kind: str, servable: str) -> str:
    """The REST path a payload kind is sent to (TF Serving's predict URL or the gateway's classify)."""
    if kind == "instances":
        return f"/v1/models/{servable}:predict"
    if kind in ("b64", "multipart"):
        return f"/v1/classify/{servable}"
    if kind in ("v2-json", "v2-binary"):
        return f"/v2/models/{servable}/infer"
    raise ValueError(
        f"payload kind {kind!r} has no REST path; choose one of: instances, b64, multipart, v2-json, v2-binary"
    )


def encode(kind: str, images: np.ndarray, servable: str = "cnn") -> tuple[bytes, str]:
    """The body and content type of one request carrying ``images`` (uint8 [batch, 28, 28])."""
    if kind.startswith("v2-"):
        body, content_type, _ = encode_v2(kind, images, servable)
        return body, content_type
    if kind == "instances":
        rows = images.reshape(len(images), 28, 28, 1).tolist()
        return orjson.dumps({"instances": rows}), "application/json"
    if kind == "b64":
        strings = [base64.b64encode(png_bytes(image)).decode() for image in images]
        return orjson.dumps({"images": strings}), "application/json"
    if kind == "multipart":
        parts = []
        for index, image in enumerate(images):
            head = (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{index}.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            )
            parts.append(head.encode() + png_bytes(image) + b"\r\n")
        return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"
    if kind == "grpc":
        from serving import protos
        from serving.tensors import from_numpy

        request = protos.PredictRequest()
        request.model_spec.name = servable
        request.model_spec.signature_name = "serving_default"
        from_numpy(images.reshape(len(images), 28, 28, 1).astype(np.float32), request.inputs["image"])
        return bytes(request.SerializeToString()), "application/grpc"
    raise ValueError(f"unknown payload kind {kind!r}; choose one of: {', '.join(KINDS)}")


def encode_v2(kind: str, images: np.ndarray, servable: str) -> tuple[bytes, str, tuple[tuple[str, str], ...]]:
    """An Open Inference Protocol request: JSON tensors, binary tensor data, or a ModelInferRequest.
    Every output is asked for (both, as TF Serving's JSON answers them); binary ones in binary."""
    shape = [len(images), 28, 28, 1]
    tensor: dict[str, Any] = {"name": "image", "datatype": "FP32", "shape": shape}
    if kind == "v2-json":
        tensor["data"] = images.reshape(-1).tolist()
        return orjson.dumps({"inputs": [tensor]}), "application/json", ()
    data = images.reshape(shape).astype("<f4").tobytes()
    if kind == "v2-binary":
        tensor["parameters"] = {"binary_data_size": len(data)}
        header = orjson.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}})
        return header + data, "application/octet-stream", (("Inference-Header-Content-Length", str(len(header))),)
    if kind == "v2-grpc":
        from serving import protos

        request = protos.ModelInferRequest(model_name=servable)
        request.inputs.add(name="image", datatype="FP32", shape=shape)
        request.raw_input_contents.append(data)
        return bytes(request.SerializeToString()), "application/grpc", ()
    raise ValueError(f"unknown payload kind {kind!r}; choose one of: {', '.join(KINDS)}")


def build(kind: str, servable: str, batch: int = 1, count: int = 64, label_shift: int = 0) -> list[Payload]:
    """``count`` distinct payloads of ``batch`` images each. ``label_shift`` deliberately mislabels
    (each expected label becomes (label + shift) mod 10), to check the wrong-answer counter."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    images, labels = test_images(max(256, batch * min(count, 4)))
    payloads = []
    for index in range(count):
        rows = [(index * batch + offset) % len(images) for offset in range(batch)]
        headers: tuple[tuple[str, str], ...] = ()
        if kind.startswith("v2-"):
            body, content_type, headers = encode_v2(kind, images[rows], servable)
        else:
            body, content_type = encode(kind, images[rows], servable)
        expected = tuple(int((labels[row] + label_shift) % 10) for row in rows)
        payloads.append(Payload(body, content_type, expected, headers))
    return payloads


def rest_class_ids(body: bytes, batch: int) -> list[int]:
    """Predicted classes from a REST answer: TF Serving's row format (``predictions`` as objects with
    ``class_id``) or the gateway's classify answer; raises AnswerError on any other shape."""
    try:
        document = orjson.loads(body)
        predictions = document["predictions"]
        classes = [int(row["class_id"]) for row in predictions]
        probabilities = [row.get("probabilities") for row in predictions]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise AnswerError(f"not a prediction: {body[:200]!r}") from error
    check_shape(classes, probabilities, batch)
    return classes


def v2_class_ids(body: bytes, header_length: str | None, batch: int) -> list[int]:
    """Predicted classes from a v2 REST answer (JSON data, or binary data after a JSON header of
    ``header_length`` bytes); raises AnswerError on any other shape."""
    try:
        split = int(header_length) if header_length else len(body)
        document = orjson.loads(body[:split])
        outputs: dict[str, np.ndarray] = {}
        offset = split
        for output in document["outputs"]:
            dtype = {"INT64": "<i8", "FP32": "<f4"}[output["datatype"]]
            size = (output.get("parameters") or {}).get("binary_data_size")
            if size is None:
                values = np.asarray(output["data"], dtype=dtype)
            else:
                values = np.frombuffer(body[offset : offset + size], dtype=dtype)
                offset += size
            outputs[output["name"]] = values.reshape(output["shape"])
        return _checked(outputs["class_id"], outputs["probabilities"], batch)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise AnswerError(f"not a v2 prediction: {body[:200]!r}") from error


def v2_grpc_class_ids(response: Any, batch: int) -> list[int]:
    """Predicted classes from a ModelInferResponse with raw_output_contents."""
    try:
        outputs = {
            tensor.name: np.frombuffer(raw, dtype={"INT64": "<i8", "FP32": "<f4"}[tensor.datatype]).reshape(
                tuple(tensor.shape)
            )
            for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        }
        return _checked(outputs["class_id"], outputs["probabilities"], batch)
    except (KeyError, ValueError) as error:
        raise AnswerError(f"not a v2 prediction: outputs {[t.name for t in response.outputs]}") from error


def _checked(class_id: np.ndarray, probabilities: np.ndarray, batch: int) -> list[int]:
    if probabilities.shape != (batch, 10):
        raise AnswerError(f"probabilities have shape {list(probabilities.shape)}, expected [{batch}, 10]")
    classes = [int(value) for value in class_id.reshape(-1)]
    check_shape(classes, None, batch)
    return classes


def grpc_class_ids(response: Any, batch: int) -> list[int]:
    """Predicted classes from a PredictResponse (``class_id`` [batch], ``probabilities`` [batch, 10])."""
    from serving.tensors import to_numpy

    try:
        classes = to_numpy(response.outputs["class_id"]).reshape(-1).tolist()
        probabilities = to_numpy(response.outputs["probabilities"])
    except Exception as error:
        raise AnswerError(f"not a prediction: outputs {sorted(response.outputs)}") from error
    if probabilities.shape != (batch, 10):
        raise AnswerError(f"probabilities have shape {list(probabilities.shape)}, expected [{batch}, 10]")
    check_shape(classes, None, batch)
    return [int(value) for value in classes]


def check_shape(classes: Sequence[int], probabilities: Sequence[Any] | None, batch: int) -> None:
    if len(classes) != batch:
        raise AnswerError(f"{len(classes)} predictions for {batch} images")
    if probabilities is not None:
        for row in probabilities:
            if not isinstance(row, (list, dict)) or len(row) != 10:
                raise AnswerError("probabilities are not 10 values per image")
    for value in classes:
        if not 0 <= value <= 9:
            raise AnswerError(f"class_id {value} out of range 0..9")


def wrong_count(classes: Sequence[int], labels: Sequence[int]) -> int:
    return sum(1 for predicted, label in zip(classes, labels, strict=True) if predicted != label)
