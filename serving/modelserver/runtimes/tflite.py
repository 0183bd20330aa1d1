"""TFLite runtime: LiteRT's Interpreter (XNNPACK is its default CPU delegate for float models).

An Interpreter is not thread-safe, so each model keeps a small pool of them; a call borrows one,
resizes its inputs to the batch at hand when they differ, and gives it back. Signatures come from the
model's SignatureDefs when it has them; a model without any gets ``serving_default`` keyed by its
tensor names, as TF Serving's TFLite session builds it.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import struct
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from serving import protos
from serving.errors import InvalidInput
from serving.modelserver.runtimes import parse_example
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
from serving.modelserver.runtimes.savedmodel import signature_from_proto
from serving.tensors import DT_STRING, tf_dtype

log = logging.getLogger("serving.modelserver")


def _spec(alias: str, detail: Mapping[str, Any]) -> TensorSpec:
    dtype = DT_STRING if np.dtype(detail["dtype"]).kind in "SUO" else tf_dtype(np.dtype(detail["dtype"]))
    shape = tuple(int(d) for d in detail.get("shape_signature", detail["shape"]))
    return TensorSpec(alias, dtype, shape, detail["name"])


class _Slot:
    """One interpreter and, per signature, where its tensors are."""

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()


class TFLiteModel(Model):
    platform = "tflite"

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        model_file = version_file(path, "model.tflite")
        size = max(1, options.interpreters)
        try:
            slots = [_Slot(model_file, options.tflite_threads) for _ in range(size)]
        except (ValueError, RuntimeError) as error:
            raise LoadError(f"Failed to load TFLite model {model_file}: {error}") from error
        self._model_file, self._threads = model_file, options.tflite_threads
        self._pool: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for slot in slots:
            self._pool.put(slot)
        interpreter = slots[0].interpreter
        self._signature_keys = dict.fromkeys(interpreter.get_signature_list())
        self.signatures = {}
        if self._signature_keys:
            for key in self._signature_keys:
                runner = interpreter.get_signature_runner(key)
                inputs = {a: _spec(a, d) for a, d in runner.get_input_details().items()}
                outputs = {a: _spec(a, d) for a, d in runner.get_output_details().items()}
                self.signatures[key] = Signature(key, PREDICT_METHOD, inputs, outputs)
        elif stored := stored_signatures(model_file.read_bytes()):
            self.signatures = stored
        else:
            inputs = {d["name"]: _spec(d["name"], d) for d in interpreter.get_input_details()}
            outputs = {d["name"]: _spec(d["name"], d) for d in interpreter.get_output_details()}
            self.signatures[DEFAULT_SIGNATURE] = Signature(DEFAULT_SIGNATURE, PREDICT_METHOD, inputs, outputs)
        self._indices = {
            "inputs": {d["name"]: d["index"] for d in interpreter.get_input_details()},
            "outputs": {d["name"]: d["index"] for d in interpreter.get_output_details()},
        }

    def predict(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]
    ) -> dict[str, np.ndarray]:
        arrays = {}
        for position, (alias, spec) in enumerate(signature.inputs.items()):
            array = inputs[alias]
            if spec.dtype == DT_STRING and array.dtype.kind == "O":
                array = array.astype(np.bytes_)
            else:
                check_dtype(spec, array, position)
            arrays[alias] = array
        slot = self._pool.get()
        try:
            if signature.name in self._signature_keys:
                runner = slot.interpreter.get_signature_runner(signature.name)
                try:
                    results = runner(**arrays)
                except ValueError as error:
                    raise InvalidInput(str(error)) from None
                return {alias: np.array(results[alias]) for alias in output_aliases}
            return self._run_plain(slot.interpreter, signature, arrays, output_aliases)
        except Exception:
            slot = self._replace(slot)
            raise
        finally:
            self._pool.put(slot)

    def _replace(self, broken: _Slot) -> _Slot:
        """A failed call can leave an interpreter unusable: after XNNPACK fails to prepare (an empty
        batch did it), the next call on that interpreter, or its destruction, aborts the process. So it
        is never used again and never destroyed (``_quarantine``); a fresh one takes its place."""
        try:
            fresh = _Slot(self._model_file, self._threads)
        except (ValueError, RuntimeError) as error:  # loaded before, so unlikely; keep serving with the old one
            log.error("could not re-create a TFLite interpreter for %s: %s", self._model_file, error)
            return broken
        _quarantine(broken.interpreter, self._model_file)
        return fresh

    def _run_plain(
        self, interpreter: Any, signature: Signature, arrays: Mapping[str, np.ndarray], aliases: Sequence[str]
    ) -> dict[str, np.ndarray]:
        resized = False
        for alias, array in arrays.items():
            index = self._indices["inputs"][signature.inputs[alias].tensor_name]
            if tuple(interpreter.get_tensor(index).shape) != array.shape:
                interpreter.resize_tensor_input(index, list(array.shape), strict=False)
                resized = True
        try:
            if resized:
                interpreter.allocate_tensors()
            for alias, array in arrays.items():
                interpreter.set_tensor(self._indices["inputs"][signature.inputs[alias].tensor_name], array)
            interpreter.invoke()
        except (ValueError, RuntimeError) as error:
            raise InvalidInput(str(error)) from None
        return {
            alias: np.array(interpreter.get_tensor(self._indices["outputs"][signature.outputs[alias].tensor_name]))
            for alias in aliases
        }


_QUARANTINED = [0]


def _quarantine(interpreter: Any, model_file: Path) -> None:
    """Keep the native interpreter alive until the process ends, even through interpreter shutdown
    (CPython never frees an object whose reference count stays above zero). Costs one interpreter's
    memory per failed call that reached the runtime; the model server's input checks stop every such
    failure known before it gets here."""
    native = getattr(interpreter, "_interpreter", None)
    if native is not None:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(native))
    _QUARANTINED[0] += 1
    log.warning(
        "a TFLite interpreter of %s failed and was replaced by a fresh one (%d set aside in this process)",
        model_file,
        _QUARANTINED[0],
    )


def stored_signatures(model: bytes) -> dict[str, Signature]:
    """Signatures from the SignatureDefs stored in the model's metadata, keyed to its tensor names."""
    signatures = {}
    for key, proto in _stored_signature_defs(model).items():
        signature = signature_from_proto(key, proto)
        for specs in (signature.inputs, signature.outputs):
            for alias, spec in specs.items():
                # TF's "x:0" is TFLite's "x"; a later output keeps its index ("op:1" is a TFLite name)
                specs[alias] = replace(spec, tensor_name=spec.tensor_name.removesuffix(":0"))
        signatures[key] = signature
    return signatures


def _stored_signature_defs(model: bytes) -> dict[str, Any]:
    """SignatureDefs that TF's signature_def_util stored in the model's metadata (a FlexBuffer map
    under ``signature_defs_metadata``), read with a minimal flatbuffer walk of the TFLite schema."""
    from flatbuffers import flexbuffers

    def u32(offset: int) -> int:
        return int(struct.unpack_from("<I", model, offset)[0])

    def field(table: int, index: int) -> int | None:
        vtable = table - int(struct.unpack_from("<i", model, table)[0])
        slot = 4 + 2 * index
        if slot >= int(struct.unpack_from("<H", model, vtable)[0]):
            return None
        relative = int(struct.unpack_from("<H", model, vtable + slot)[0])
        return table + relative if relative else None

    def vector(position: int) -> tuple[int, int]:
        start = position + u32(position)
        return start + 4, u32(start)

    def table_at(position: int) -> int:
        return position + u32(position)

    try:
        root = u32(0)
        metadata, buffers = field(root, 6), field(root, 4)  # Model.metadata, Model.buffers
        if metadata is None or buffers is None:
            return {}
        entries, count = vector(metadata)
        buffer_start, _ = vector(buffers)
        for index in range(count):
            entry = table_at(entries + 4 * index)
            name_field, buffer_field = field(entry, 0), field(entry, 1)
            if name_field is None or buffer_field is None:
                continue
            name_start, name_length = vector(name_field)
            if model[name_start : name_start + name_length] != b"signature_defs_metadata":
                continue
            data_field = field(table_at(buffer_start + 4 * u32(buffer_field)), 0)
            if data_field is None:
                return {}
            data_start, data_length = vector(data_field)
            # values are serialized SignatureDefs stored as FlexBuffer strings: read their bytes as they are
            # (decoding them as UTF-8 failed on parse_example_tflite's, whose bytes are not valid UTF-8)
            mapping = flexbuffers.GetRoot(model[data_start : data_start + data_length]).AsMap
            return {
                key.AsKey: protos.SignatureDef.FromString(value.AsStringBytes)
                for key, value in zip(mapping.Keys, mapping.Values, strict=True)
            }
    except (struct.error, ValueError, UnicodeError, DecodeError, IndexError):
        return {}
    return {}


def load(path: Path, options: RuntimeOptions) -> Model:
    model_file = version_file(path, "model.tflite")
    data = model_file.read_bytes()
    if parse_example.uses_parse_example(data):  # a custom op LiteRT has no kernel for; run it here
        try:
            return parse_example.ParseExampleModel(model_file, stored_signatures(data), options.tflite_threads)
        except (ValueError, RuntimeError) as error:
            raise LoadError(f"Failed to load TFLite model {model_file}: {error}") from error
    return TFLiteModel(path, options)
