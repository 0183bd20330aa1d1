"""ONNX runtime: onnxruntime's InferenceSession (thread-safe; one per model version).

The model's graph inputs and outputs become ``serving_default``; symbolic or unknown dimensions are
reported as -1, as a SignatureDef would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from serving import tensors
from serving.errors import InvalidInput
from serving.modelserver.runtimes.base import (
    DEFAULT_SIGNATURE,
    PREDICT_METHOD,
    LoadError,
    Model,
    RuntimeOptions,
    Signature,
    TensorSpec,
    check_dtype,
    version_file,
)

_ONNX_TYPES = {
    "tensor(float)": "DT_FLOAT",
    "tensor(double)": "DT_DOUBLE",
    "tensor(float16)": "DT_HALF",
    "tensor(int64)": "DT_INT64",
    "tensor(int32)": "DT_INT32",
    "tensor(int16)": "DT_INT16",
    "tensor(int8)": "DT_INT8",
    "tensor(uint8)": "DT_UINT8",
    "tensor(uint16)": "DT_UINT16",
    "tensor(uint32)": "DT_UINT32",
    "tensor(uint64)": "DT_UINT64",
    "tensor(bool)": "DT_BOOL",
    "tensor(string)": "DT_STRING",
}


def _spec(node: object) -> TensorSpec:
    name = str(node.name)  # type: ignore[attr-defined]
    dtype = tensors.DT[_ONNX_TYPES.get(node.type, "DT_INVALID")].number  # type: ignore[attr-defined]
    shape = node.shape  # type: ignore[attr-defined]
    dims = None if shape is None else tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)
    return TensorSpec(name, dtype, dims, name)


class OnnxModel(Model):
    platform = "onnx"

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        import onnxruntime

        model_file = version_file(path, "model.onnx")
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: the event loop and other models share the cores.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(
                str(model_file), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types for bad files
            raise LoadError(f"Failed to load ONNX model {model_file}: {error}") from error
        inputs = {s.alias: s for s in map(_spec, self._session.get_inputs())}
        outputs = {s.alias: s for s in map(_spec, self._session.get_outputs())}
        self.signatures = {DEFAULT_SIGNATURE: Signature(DEFAULT_SIGNATURE, PREDICT_METHOD, inputs, outputs)}

    def predict(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]
    ) -> dict[str, np.ndarray]:
        feeds = {}
        for position, (alias, spec) in enumerate(signature.inputs.items()):
            check_dtype(spec, inputs[alias], position)
            feeds[spec.tensor_name] = inputs[alias]
        names = [signature.outputs[alias].tensor_name for alias in output_aliases]
        try:
            results = self._session.run(names, feeds)
        except Exception as error:  # onnxruntime's errors (shape, rank) are the caller's
            raise InvalidInput(str(error).split("\n")[0]) from None
        return {alias: np.asarray(value) for alias, value in zip(output_aliases, results, strict=True)}


def load(path: Path, options: RuntimeOptions) -> Model:
    return OnnxModel(path, options)
