"""SavedModel runtime: TensorFlow, imported only when a SavedModel is loaded.

Runs signatures the way tensorflow_model_server does: the MetaGraph tagged ``serve`` in a TF1-style
Session, fed and fetched by the tensor names in its SignatureDefs. So TF1 and TF2 exports behave as
in TF Serving (no static-shape check on feeds, TensorFlow's own error for a wrong dtype, signature
``defaults`` for missing inputs) and SignatureDefs are reported exactly as exported.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serving import protos
from serving.errors import GRPC_CODE_BY_NUMBER, InvalidInput, ServingError
from serving.modelserver.runtimes.base import LoadError, Model, RuntimeOptions, Signature, TensorSpec
from serving.tensors import DT_STRING, numpy_dtype, to_numpy

log = logging.getLogger("serving.modelserver")

_IMPORT_LOCK = threading.Lock()


def _tensorflow() -> Any:
    with _IMPORT_LOCK:
        import tensorflow as tf

    return tf


def _shape(info: Any) -> tuple[int, ...] | None:
    """None for an unknown rank; a TensorInfo without a shape at all (TF1 exports such as TF Serving's
    half_plus_three) says nothing about it either, not that the tensor is a scalar."""
    if info.tensor_shape.unknown_rank or not info.HasField("tensor_shape"):
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
        # Idle worker threads sleep instead of spinning: the event loop and other models share the cores.
        config.experimental.disable_thread_spinning = True
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
        self._path = path
        self._eager: Any = None  # tf.saved_model.load's object, once the session cannot run this model
        self._eager_lock = threading.Lock()
        self._frozen: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {}
        self._config = config
        self._probe()

    def _probe(self) -> None:
        """Run serving_default once on zeros, so a model the session cannot run is found at load."""
        signature = self.signatures.get("serving_default")
        if signature is None or not signature.inputs:
            return
        inputs = {}
        for alias, spec in signature.inputs.items():
            if spec.shape is None or spec.dtype == DT_STRING:
                return
            inputs[alias] = np.zeros([1 if d < 0 else d for d in spec.shape], numpy_dtype(spec.dtype))
        with contextlib.suppress(ServingError):  # a model may reject zeros; requests will tell
            self.predict(signature, inputs, sorted(signature.outputs))

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
        if self._eager is not None:
            return self._predict_eager(signature, inputs, output_aliases)
        try:
            # The C API call behind Session.run, without its Python-side static-shape check: TF Serving
            # feeds tensors to the session as they come.
            results = self._session._call_tf_sessionrun(None, feeds, fetches, [], None)
        except self._tf.errors.FailedPreconditionError as error:
            if "Could not find variable" not in error.message:
                raise _serving_error(error) from None
            self._switch_to_eager(error.message)
            return self._predict_eager(signature, inputs, output_aliases)
        except self._tf.errors.OpError as error:
            raise _serving_error(error) from None
        return {alias: np.asarray(value) for alias, value in zip(output_aliases, results, strict=True)}

    def _switch_to_eager(self, message: str) -> None:
        """Keras 3 models saved inside a tf.Module hold variables that a TF1 session (and so
        tensorflow_model_server, see tensorflow/serving#2226) cannot find. Such a model is loaded with
        tf.saved_model.load; each signature function is frozen (variables folded into constants) and
        run in a session of its own graph, which costs less per call than calling the function
        eagerly; a signature that cannot be frozen is called eagerly. The log says so, once."""
        with self._eager_lock:
            if self._eager is not None:
                return
            log.warning(
                "SavedModel %s cannot run in a TF1 session (%s); tensorflow_model_server fails on it the same "
                "way (tensorflow/serving#2226). Serving it through tf.saved_model.load instead.",
                self._path,
                message.split(".")[0],
            )
            loaded = self._tf.saved_model.load(str(self._path))
            self._frozen = self._freeze(loaded)
            self._eager = loaded

    def _freeze(self, loaded: Any) -> dict[str, tuple[Any, dict[str, Any], dict[str, Any]]]:
        """signature name -> (session, {input alias: TF_Output}, {output alias: TF_Output})."""
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        tf = self._tf
        frozen: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {}
        for name in list(loaded.signatures.keys()):
            function = loaded.signatures[name]
            try:
                constant = convert_variables_to_constants_v2(function)
                graph = tf.Graph()
                with graph.as_default():
                    tf.graph_util.import_graph_def(constant.graph.as_graph_def(), name="")
                input_specs = function.structured_input_signature[1]
                inputs = {
                    alias: graph.get_tensor_by_name(f"{spec.name}:0")._as_tf_output()
                    for alias, spec in input_specs.items()
                }
                aliases = sorted(function.structured_outputs)  # the order tf.nest flattens a dict in
                outputs = {
                    alias: graph.get_tensor_by_name(tensor.name)._as_tf_output()
                    for alias, tensor in zip(aliases, constant.outputs, strict=True)
                }
            except Exception as error:  # freezing is an optimisation; the eager call still works
                log.warning("Signature %s of %s is called eagerly (cannot freeze it: %s)", name, self._path, error)
                continue
            session = tf.compat.v1.Session(graph=graph, config=self._config)
            frozen[name] = (session, inputs, outputs)
        return frozen

    def _predict_eager(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_aliases: Sequence[str]
    ) -> dict[str, np.ndarray]:
        tf = self._tf
        values = {}
        for alias in signature.inputs:
            value = inputs.get(alias)
            values[alias] = signature.defaults[alias] if value is None else value
        frozen = self._frozen.get(signature.name)
        try:
            if frozen is not None:
                session, feeds, fetches = frozen
                results = session._call_tf_sessionrun(
                    None, {feeds[a]: v for a, v in values.items()}, [fetches[a] for a in output_aliases], [], None
                )
                return {alias: np.asarray(r) for alias, r in zip(output_aliases, results, strict=True)}
            function = self._eager.signatures[signature.name]
            outputs = function(**{alias: tf.constant(value) for alias, value in values.items()})
        except tf.errors.OpError as error:
            raise _serving_error(error) from None
        except (TypeError, ValueError, KeyError) as error:
            raise InvalidInput(str(error).split("\n")[0]) from None
        return {alias: outputs[alias].numpy() for alias in output_aliases}

    def close(self) -> None:
        self._session.close()
        for session, _, _ in self._frozen.values():
            session.close()


def _serving_error(error: Any) -> ServingError:
    return ServingError.from_code(GRPC_CODE_BY_NUMBER.get(error.error_code, grpc.StatusCode.UNKNOWN), error.message)


def load(path: Path, options: RuntimeOptions) -> Model:
    return SavedModel(path, options)
