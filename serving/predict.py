"""A prediction as every front hands it on: named numpy arrays plus the model they are for.

Each protocol decodes a request once into a ``Predict`` (TF Serving REST JSON, TF Serving gRPC's
PredictRequest, the friendly image API; a second protocol such as the Open Inference Protocol fills
the same fields) and gets a ``Prediction`` back from the one prediction path, which it encodes in its
own format. Protos appear only at the edges: ``from_proto`` / ``to_proto`` here, and the upstream call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving import protos
from serving.errors import InvalidInput
from serving.tensors import from_numpy, to_numpy


@dataclass(slots=True)
class ModelSpec:
    """Which model answers: a name, optionally a version or a version label, and a signature."""

    name: str
    version: int | None = None  # None: the latest (or the label's) version
    label: str | None = None
    signature: str = ""  # '' means the default signature

    @classmethod
    def from_proto(cls, spec: Any) -> ModelSpec:
        choice = spec.WhichOneof("version_choice")
        return cls(
            spec.name,
            spec.version.value if choice == "version" else None,
            spec.version_label if choice == "version_label" else None,
            spec.signature_name,
        )

    def fill(self, spec: Any) -> None:
        """Write into a ``tensorflow.serving.ModelSpec``."""
        spec.name = self.name
        if self.version is not None:
            spec.version.value = self.version
        elif self.label is not None:
            spec.version_label = self.label
        if self.signature:
            spec.signature_name = self.signature


@dataclass(slots=True)
class Predict:
    """A decoded Predict request. ``inputs`` are never modified in place, so requests may share them
    (an ensemble's members, a shadow copy)."""

    spec: ModelSpec
    inputs: dict[str, np.ndarray]
    output_filter: tuple[str, ...] = ()

    def rows(self) -> int | None:
        """The first dimension every input shares, or None (a scalar input, or inputs that disagree)."""
        rows = None
        for array in self.inputs.values():
            if array.ndim == 0 or (rows is not None and array.shape[0] != rows):
                return None
            rows = array.shape[0]
        return rows

    def for_servable(self, name: str, keep_version: bool = False) -> Predict:
        """The same inputs for another servable (a route's choice, an ensemble member, a shadow)."""
        spec = self.spec
        version, label = (spec.version, spec.label) if keep_version else (None, None)
        return Predict(ModelSpec(name, version, label, spec.signature), self.inputs, self.output_filter)

    @classmethod
    def from_proto(cls, request: Any, max_bytes: int | None = None) -> Predict:
        """The request's tensors as arrays. ``max_bytes`` bounds what a short ``*_val`` list may expand
        to (TensorFlow broadcasts its last value over the shape), so a small message cannot take memory."""
        inputs = {}
        for name, tensor in request.inputs.items():
            if max_bytes is not None and not tensor.tensor_content:
                _check_size(name, tensor, max_bytes)
            inputs[name] = to_numpy(tensor)
        return cls(ModelSpec.from_proto(request.model_spec), inputs, tuple(request.output_filter))

    def to_proto(self) -> Any:
        """One ``PredictRequest``: numeric inputs in ``tensor_content``."""
        request = protos.PredictRequest()
        self.spec.fill(request.model_spec)
        for name, array in self.inputs.items():
            from_numpy(array, out=request.inputs[name])
        if self.output_filter:
            request.output_filter.extend(self.output_filter)
        return request


def _check_size(name: str, tensor: Any, max_bytes: int) -> None:
    count = 1
    for dim in tensor.tensor_shape.dim:
        count *= max(int(dim.size), 0)
    if count * 8 > max_bytes:
        shape = ",".join(str(dim.size) for dim in tensor.tensor_shape.dim)
        raise InvalidInput(f"Input {name}: a tensor of shape [{shape}] is larger than the {max_bytes} byte limit")


@dataclass(slots=True)
class Prediction:
    """The answer: output arrays, and the model that produced them (its name, version, signature)."""

    outputs: dict[str, np.ndarray]
    name: str
    version: int | None = None
    signature: str = ""

    @property
    def version_text(self) -> str:
        return "" if self.version is None else str(self.version)

    @classmethod
    def from_proto(cls, response: Any) -> Prediction:
        spec = response.model_spec
        outputs = {name: to_numpy(tensor) for name, tensor in response.outputs.items()}
        version = spec.version.value if spec.HasField("version") else None
        return cls(outputs, spec.name, version, spec.signature_name)

    def to_proto(self, outputs: Mapping[str, np.ndarray] | None = None) -> Any:
        """A ``PredictResponse`` with numeric outputs in ``tensor_content``."""
        response = protos.PredictResponse()
        spec = response.model_spec
        spec.name = self.name
        if self.version is not None:
            spec.version.value = self.version
        if self.signature:
            spec.signature_name = self.signature
        for name, array in (self.outputs if outputs is None else outputs).items():
            from_numpy(array, out=response.outputs[name])
        return response

    def rows(self, start: int, stop: int) -> Prediction:
        """Rows ``start:stop`` of every output (views, no copy)."""
        outputs = {name: array[start:stop] for name, array in self.outputs.items()}
        return Prediction(outputs, self.name, self.version, self.signature)
