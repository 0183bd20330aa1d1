"""A TF Serving signature in the Open Inference Protocol's terms, and checks of a request against it.

Model metadata lists a signature's inputs and outputs with v2 datatypes and shapes (-1 for a
dimension of any size). A request's inputs must match: every input named, no unknown one, the
datatype exactly, and the shape (rank and every fixed dimension). Each mismatch gets its own message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from serving import protos
from serving.errors import InvalidInput
from serving.v2 import datatypes
from serving.v2.infer import InferRequest

DEFAULT_SIGNATURE = "serving_default"

# models.config's model_platform -> the protocol's platform names (Triton's where it has one)
PLATFORMS = {
    "tensorflow": "tensorflow_savedmodel",
    "tflite": "tensorflow_tflite",
    "onnx": "onnxruntime_onnx",
    "tensorrt": "tensorrt_plan",
}
ENSEMBLE_PLATFORM = "ensemble"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...] | None  # None: unknown rank

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": list(self.shape) if self.shape is not None else [-1],
        }


@dataclass(frozen=True)
class Signature:
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]


def _spec(name: str, info: Any) -> TensorSpec:
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
    return TensorSpec(name, datatypes.of_tf(info.dtype), dims)


def signature_of(definition: Any) -> Signature:
    """A SignatureDef's inputs and outputs, sorted by name."""
    return Signature(
        {name: _spec(name, definition.inputs[name]) for name in sorted(definition.inputs)},
        {name: _spec(name, definition.outputs[name]) for name in sorted(definition.outputs)},
    )


def signatures_of(response: Any) -> dict[str, Signature]:
    """Every signature of a GetModelMetadataResponse (its ``signature_def`` entry)."""
    signatures = protos.SignatureDefMap()
    if "signature_def" not in response.metadata or not response.metadata["signature_def"].Unpack(signatures):
        raise InvalidInput("The model's metadata has no signature_def")
    return {name: signature_of(definition) for name, definition in signatures.signature_def.items()}


def pick(signatures: Mapping[str, Signature], name: str, model: str) -> Signature:
    key = name or DEFAULT_SIGNATURE
    signature = signatures.get(key)
    if signature is None:
        raise InvalidInput(f"model '{model}' has no signature '{key}' (it has: {', '.join(sorted(signatures))})")
    return signature


def model_metadata(name: str, versions: Iterable[str], platform: str, signature: Signature) -> dict[str, Any]:
    """The REST body of model metadata."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [spec.as_json() for spec in signature.inputs.values()],
        "outputs": [spec.as_json() for spec in signature.outputs.values()],
    }


def model_metadata_message(name: str, versions: Iterable[str], platform: str, signature: Signature) -> Any:
    """The same as an ``inference.ModelMetadataResponse``."""
    response = protos.ModelMetadataResponse(name=name, platform=platform)
    response.versions.extend(versions)
    for specs, field in ((signature.inputs, response.inputs), (signature.outputs, response.outputs)):
        for spec in specs.values():
            field.add(
                name=spec.name, datatype=spec.datatype, shape=list(spec.shape) if spec.shape is not None else [-1]
            )
    return response


def check_request(request: InferRequest, signature: Signature) -> None:
    """InvalidInput unless the request's inputs and requested outputs fit the signature."""
    model = request.model
    expected = signature.inputs
    for name, array in request.inputs.items():
        spec = expected.get(name)
        if spec is None:
            raise InvalidInput(
                f"unexpected inference input '{name}' for model '{model}'; it takes: {', '.join(expected)}"
            )
        datatype = request.datatypes.get(name) or datatypes.of_array(array)
        if datatype != spec.datatype:
            raise InvalidInput(
                f"unexpected datatype {datatype} for inference input '{name}' of model '{model}', "
                f"expecting {spec.datatype}"
            )
        if spec.shape is not None and not _fits(array.shape, spec.shape):
            raise InvalidInput(
                f"unexpected shape for input '{name}' of model '{model}': expecting "
                f"{list(spec.shape)} (-1: any size), got {list(array.shape)}"
            )
    missing = [name for name in expected if name not in request.inputs]
    if missing:
        raise InvalidInput(f"model '{model}' needs input {', '.join(repr(n) for n in missing)}; it was not sent")
    for output in request.outputs or ():
        if output.name not in signature.outputs:
            raise InvalidInput(
                f"unexpected inference output '{output.name}' for model '{model}'; "
                f"it returns: {', '.join(signature.outputs)}"
            )


def _fits(shape: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    return len(shape) == len(expected) and all(e == -1 or e == s for s, e in zip(shape, expected, strict=True))
