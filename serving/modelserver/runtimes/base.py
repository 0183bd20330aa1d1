"""The one runtime interface: a loaded model version with named signatures and a batch predict."""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving import protos
from serving.errors import InvalidInput
from serving.tensors import dtype_name

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorSpec:
    """One signature input or output: its alias, TF DataType number, shape (-1 for unknown dims; None
    for unknown rank) and the runtime's own tensor name."""

    alias: str
    dtype: int
    shape: tuple[int, ...] | None
    tensor_name: str

    def to_proto(self, out: Any) -> None:
        out.name = self.tensor_name
        out.dtype = self.dtype
        if self.shape is None:
            out.tensor_shape.unknown_rank = True
        else:
            for size in self.shape:
                out.tensor_shape.dim.add().size = size


@dataclass
class Signature:
    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    defaults: dict[str, np.ndarray] = field(default_factory=dict)
    proto: Any = None  # the exact SignatureDef where the format carries one (SavedModel)

    def signature_def(self) -> Any:
        if self.proto is not None:
            return self.proto
        proto = protos.SignatureDef(method_name=self.method_name)
        for alias, spec in self.inputs.items():
            spec.to_proto(proto.inputs[alias])
        for alias, spec in self.outputs.items():
            spec.to_proto(proto.outputs[alias])
        return proto

    @property
    def batchable(self) -> bool:
        """Every input and output has a leading batch dimension (so requests can be concatenated)."""
        specs = [*self.inputs.values(), *self.outputs.values()]
        return bool(self.inputs) and all(s.shape is not None and len(s.shape) >= 1 for s in specs)


@dataclass(frozen=True)
class RuntimeOptions:
    intra_op_threads: int = max(1, os.cpu_count() or 1)
    inter_op_threads: int = max(1, os.cpu_count() or 1)
    interpreters: int = max(1, os.cpu_count() or 1)  # TFLite: interpreters per model, used concurrently
    tflite_threads: int = 1  # threads per TFLite interpreter (XNNPACK's pool spins while it waits)


class Model(abc.ABC):
    """A loaded servable version. ``predict`` is called from worker threads, concurrently."""

    platform: str = ""
    signatures: dict[str, Signature]

    @abc.abstractmethod
    def predict(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Run one batch: inputs keyed by alias (already checked against the signature's names)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's resources (called once no request uses this version any more)."""


class LoadError(Exception):
    """A version that cannot be loaded; the message is what GetModelStatus reports."""


def check_dtype(spec: TensorSpec, array: np.ndarray, position: int) -> None:
    """Runtimes without TensorFlow's own check answer a wrong dtype with TensorFlow's message."""
    expected = spec.dtype
    actual = _tf_dtype_of(array)
    if actual != expected:
        raise InvalidInput(f"Expects arg[{position}] to be {_short(expected)} but {_short(actual)} is provided")


def _short(number: int) -> str:
    name = dtype_name(number)
    return name[3:].lower() if name.startswith("DT_") else name


def _tf_dtype_of(array: np.ndarray) -> int:
    from serving.tensors import tf_dtype

    return tf_dtype(array.dtype)


def version_file(path: Path, filename: str) -> Path:
    candidate = path / filename
    if not candidate.is_file():
        raise LoadError(f"Could not find {filename} in {path}")
    return candidate
