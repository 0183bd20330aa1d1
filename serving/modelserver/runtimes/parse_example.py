"""TFLite models that parse tf.Examples with the ParseExampleV2 custom op (TF Serving's
``parse_example_tflite`` test model).

TF Serving registers TensorFlow's TFLite kernel for the op in every TFLite session
(``servables/tensorflow/tflite_session.cc``: ``tflite::ops::custom::AddParseExampleOp``); LiteRT's Python
wheel has no such kernel, so the model does not load ("Encountered unresolved custom op"). This module
takes the op out of the graph and does its work in Python, following the kernel
(``tensorflow/lite/kernels/parse_example/parse_example.cc``) for dense features: each serialized
Example gives, per key, a value list of the output's per-example size, or the key's default when the
feature is missing; a wrong type or count is an error in the kernel's words. What is left of the
graph (nothing, for TF Serving's test model) runs in a LiteRT interpreter fed with the parsed tensors.
Sparse and ragged features are not supported (the load fails and says so).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from serving import protos
from serving.errors import InvalidInput
from serving.modelserver.runtimes.base import DEFAULT_SIGNATURE, PREDICT_METHOD, LoadError, Model, Signature, TensorSpec

CUSTOM_OP = b"ParseExampleV2"
_DTYPES: dict[int, np.dtype[Any]] = {0: np.dtype(np.float32), 4: np.dtype(np.int64), 5: np.dtype(object)}
_KINDS = {"float_list": "float", "int64_list": "int64", "bytes_list": "string"}
_TYPE_NAMES = {np.dtype(np.float32): "float", np.dtype(np.int64): "int64", np.dtype(object): "string"}
_TF_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.int64): 9, np.dtype(object): 7}  # DT_FLOAT, DT_INT64, DT_STRING


def uses_parse_example(model_bytes: bytes) -> bool:
    return CUSTOM_OP in model_bytes


@dataclass(frozen=True)
class DenseFeature:
    key: str
    output: str  # tensor name of the op's dense output
    dtype: np.dtype[Any]
    dims: tuple[int, ...]  # the output tensor's shape; one example fills prod(dims) values
    default: np.ndarray


@dataclass(frozen=True)
class ParseStep:
    serialized: str  # tensor name of the graph input holding serialized Examples
    features: tuple[DenseFeature, ...]


def _strings(buffer: bytes) -> list[bytes]:
    """A TFLite string tensor's buffer: count, count+1 offsets, then the bytes."""
    (count,) = struct.unpack_from("<i", buffer, 0)
    offsets = struct.unpack_from(f"<{count + 1}i", buffer, 4)
    return [buffer[offsets[i] : offsets[i + 1]] for i in range(count)]


def _constant(model: Any, tensor: Any) -> np.ndarray:
    data = model.buffers[tensor.buffer].data
    if data is None:
        raise LoadError(f"ParseExampleV2 input {tensor.name.decode()} is not a constant")
    raw = bytes(bytearray(data))
    if tensor.type == 5:
        return np.array(_strings(raw), dtype=object)
    values: np.ndarray = np.frombuffer(raw, dtype=_DTYPES[tensor.type]).copy()
    return values


def split_parse_ops(model: Any) -> list[ParseStep]:
    """Remove the ParseExampleV2 ops from subgraph 0 of a ``schema_py_generated.ModelT`` (their
    outputs become graph inputs) and describe what each one did."""
    subgraph = model.subgraphs[0]
    steps = []
    kept = []
    for op in subgraph.operators:
        if model.operatorCodes[op.opcodeIndex].customCode != CUSTOM_OP:
            kept.append(op)
            continue
        serialized, _names, sparse_keys, dense_keys, ragged_keys, *defaults = op.inputs
        if serialized not in subgraph.inputs:
            raise LoadError("ParseExampleV2 is supported only on a graph input of serialized Examples")
        tensors = subgraph.tensors
        if len(_constant(model, tensors[sparse_keys])) or len(_constant(model, tensors[ragged_keys])):
            raise LoadError("ParseExampleV2 with sparse or ragged features is not supported")
        keys = [key.decode() for key in _constant(model, tensors[dense_keys])]
        features = []
        for key, output, default in zip(keys, op.outputs, defaults, strict=True):
            tensor = tensors[output]
            dims = tuple(int(d) for d in tensor.shape)
            dtype = _DTYPES.get(tensor.type)
            if dtype is None:
                raise LoadError(f"ParseExampleV2 output {tensor.name.decode()} has an unsupported type")
            features.append(DenseFeature(key, tensor.name.decode(), dtype, dims, _constant(model, tensors[default])))
        steps.append(ParseStep(tensors[serialized].name.decode(), tuple(features)))
        subgraph.inputs = [i for i in subgraph.inputs if i != serialized] + list(op.outputs)
    subgraph.operators = kept
    model.signatureDefs = []  # their tensor maps name the removed op's tensors
    return steps


def parse_examples(step: ParseStep, serialized: np.ndarray) -> dict[str, np.ndarray]:
    """Dense outputs for a batch of serialized Examples, as the TFLite kernel fills them."""
    blobs = [value if isinstance(value, bytes) else str(value).encode() for value in serialized.reshape(-1)]
    batch = len(blobs)
    values: dict[str, list[Any]] = {feature.output: [] for feature in step.features}
    for index, blob in enumerate(blobs):
        try:
            example = protos.Example.FromString(blob)
        except DecodeError:
            raise InvalidInput("Failed to parse example") from None
        for feature in step.features:
            values[feature.output].extend(_dense_values(feature, example, index))
    outputs = {}
    for feature in step.features:
        shape = (batch * (feature.dims[0] if feature.dims else 1), *feature.dims[1:])
        outputs[feature.output] = np.array(values[feature.output], dtype=feature.dtype).reshape(shape)
    return outputs


def _dense_values(feature: DenseFeature, example: Any, index: int) -> list[Any]:
    count = int(np.prod(feature.dims)) if feature.dims else 1
    expected = _TYPE_NAMES[feature.dtype]
    found = example.features.feature.get(feature.key)
    kind = found.WhichOneof("kind") if found is not None else None
    where = f"Name: <unknown>, Key: {feature.key}, Index: {index}.  "
    if kind is None:
        if feature.default.size == 0:
            raise InvalidInput(
                f"Name: <unknown>, Feature: {feature.key} (data type: {expected}) is required but could not be found."
            )
        return list(feature.default.reshape(-1)[:count])
    if _KINDS[kind] != expected:
        raise InvalidInput(f"{where}Data types don't match. Data type: {_KINDS[kind]} but expected type: {expected}")
    items = list(getattr(found, kind).value)
    if len(items) != count:
        shape = "[" + ",".join(str(d) for d in feature.dims) + "]"
        noun = "bytes" if expected == "string" else expected
        raise InvalidInput(
            f"{where}Number of {noun} values != expected.  Values size:{len(items)} but output shape: {shape}"
        )
    return items


class ParseExampleModel(Model):
    """A TFLite model whose ParseExampleV2 ops run here; the rest of its graph runs in LiteRT."""

    platform = "tflite"

    def __init__(self, model_file: Path, signatures: Mapping[str, Signature] | None, threads: int) -> None:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema

        model = schema.ModelT.InitFromPackedBuf(model_file.read_bytes(), 0)
        subgraph = model.subgraphs[0]
        names = {index: tensor.name.decode() for index, tensor in enumerate(subgraph.tensors)}
        original_inputs, outputs = [names[i] for i in subgraph.inputs], [names[i] for i in subgraph.outputs]
        self._steps = split_parse_ops(model)
        self._lock = threading.Lock()
        self._interpreter = None
        if subgraph.operators:
            from ai_edge_litert.interpreter import Interpreter

            builder = flatbuffers.Builder(1024)
            builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
            self._interpreter = Interpreter(model_content=bytes(builder.Output()), num_threads=threads)
            self._interpreter.allocate_tensors()
        self.signatures = (
            dict(signatures)
            if signatures
            else {DEFAULT_SIGNATURE: self._tensor_signature(subgraph, original_inputs, outputs)}
        )

    @staticmethod
    def _tensor_signature(subgraph: Any, inputs: Sequence[str], outputs: Sequence[str]) -> Signature:
        """serving_default keyed by tensor names, as TF Serving's TFLite session builds it."""
        by_name = {tensor.name.decode(): tensor for tensor in subgraph.tensors}

        def spec(name: str) -> TensorSpec:
            tensor = by_name[name]
            dims = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
            shape = tuple(int(d) for d in dims)
            return TensorSpec(name, _TF_DTYPES.get(_DTYPES.get(tensor.type, np.dtype(np.float32)), 1), shape, name)

        return Signature(DEFAULT_SIGNATURE, PREDICT_METHOD, {n: spec(n) for n in inputs}, {n: spec(n) for n in outputs})

    def predict(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]
    ) -> dict[str, np.ndarray]:
        by_tensor = {signature.inputs[alias].tensor_name: array for alias, array in inputs.items()}
        tensors: dict[str, np.ndarray] = {}
        for step in self._steps:
            tensors.update(parse_examples(step, np.asarray(by_tensor.pop(step.serialized))))
        if self._interpreter is not None:
            tensors.update(self._run_rest({**by_tensor, **tensors}))
        return {alias: tensors[signature.outputs[alias].tensor_name] for alias in output_aliases}

    def _run_rest(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        interpreter = self._interpreter
        assert interpreter is not None
        with self._lock:
            details = {d["name"]: d["index"] for d in interpreter.get_input_details()}
            for name, index in details.items():
                interpreter.resize_tensor_input(index, list(feeds[name].shape), strict=False)
            interpreter.allocate_tensors()
            for name, index in details.items():
                interpreter.set_tensor(index, feeds[name])
            try:
                interpreter.invoke()
            except (ValueError, RuntimeError) as error:
                raise InvalidInput(str(error)) from None
            return {d["name"]: np.array(interpreter.get_tensor(d["index"])) for d in interpreter.get_output_details()}
