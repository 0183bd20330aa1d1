"""SavedModel runtime: TensorFlow, imported only when a SavedModel is loaded.

Runs signatures the way tensorflow_model_server does: the MetaGraph tagged ``serve`` in a TF1-style
Session, fed and fetched by the tensor names in its SignatureDefs. So TF1 and TF2 exports behave as
in TF Serving (no static-shape check on feeds, TensorFlow's own error for a wrong dtype, signature
``defaults`` for missing inputs) and SignatureDefs are reported exactly as exported.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serving import protos
from serving.errors import GRPC_CODE_BY_NUMBER, ServingError
from serving.modelserver.runtimes.base import LoadError, Model, RuntimeOptions, Signature, TensorSpec
from serving.tensors import to_numpy

_IMPORT_LOCK = threading.Lock()


def _tensorflow() -> Any:
    with _IMPORT_LOCK:
        import tensorflow as tf

    return tf


def _shape(info: Any) -> tuple[int, ...] | None:
    if info.tensor_shape.unknown_rank:
        return None
    return tuple(int(d.size) for d in info.tensor_shape.dim)


def signature_from_proto(name: str, proto: Any) -> Signature:
    inputs = {a: TensorSpec(a, i.dtype, _shape(i), i.name) for a, i in proto.inputs.items()}
    outputs = {a: TensorSpec(a, i.dtype, _shape(i), i.name) for a, i in proto.outputs.items()}
    defaults = {a: to_numpy(t) for a, t in proto.defaults.items()}
    return Signature(name, proto.method_name, inputs, outputs, defaults, proto)


class SavedModel(Model):
    platform = "tensorflow"

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
            raise LoadError(f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}")
        tf = _tensorflow()
        self._tf = tf
        self._graph = tf.Graph()
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=options.intra_op_threads,
            inter_op_parallelism_threads=options.inter_op_threads,
        )
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        try:
            with self._graph.as_default():
                meta_graph = tf.compat.v1.saved_model.loader.load(self._session, ["serve"], str(path))
        except Exception as error:  # TF raises many kinds; all mean this version cannot load
            self._session.close()
            raise LoadError(f"Failed to load SavedModel at {path}: {error}") from error
        self.signatures = {}
        for name, tf_proto in meta_graph.signature_def.items():  # __saved_model_init_op too, as TF Serving
            proto = protos.SignatureDef.FromString(tf_proto.SerializeToString())
            self.signatures[name] = signature_from_proto(name, proto)
        self._outputs: dict[str, Any] = {}

    def _tf_output(self, tensor_name: str) -> Any:
        found = self._outputs.get(tensor_name)
        if found is None:
            found = self._graph.get_tensor_by_name(tensor_name)._as_tf_output()
            self._outputs[tensor_name] = found
        return found

    def predict(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]
    ) -> dict[str, np.ndarray]:
        feeds = {}
        for alias, spec in signature.inputs.items():
            value = inputs.get(alias)
            if value is None:
                value = signature.defaults[alias]
            feeds[self._tf_output(spec.tensor_name)] = value
        fetches = [self._tf_output(signature.outputs[alias].tensor_name) for alias in output_aliases]
        try:
            # The C API call behind Session.run, without its Python-side static-shape check: TF Serving
            # feeds tensors to the session as they come.
            results = self._session._call_tf_sessionrun(None, feeds, fetches, [], None)
        except self._tf.errors.OpError as error:
            raise ServingError.from_code(
                GRPC_CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN), error.message
            ) from None
        return {alias: np.asarray(value) for alias, value in zip(output_aliases, results, strict=True)}

    def close(self) -> None:
        self._session.close()


def load(path: Path, options: RuntimeOptions) -> Model:
    return SavedModel(path, options)
