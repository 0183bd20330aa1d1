"""The model server's core: TF Serving's PredictionService and ModelService over the servable
manager, shared by the gRPC and REST front ends. Model calls run in a thread pool (or a batcher),
never on the event loop."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serving import protos, tracing
from serving.errors import InvalidInput, ServingError
from serving.modelserver import inference
from serving.modelserver.batching import Batcher, batch_key
from serving.modelserver.config import BatchingOptions
from serving.modelserver.manager import ServableManager, ServableVersion
from serving.modelserver.metrics import Metrics
from serving.modelserver.runtimes.base import Signature
from serving.predict import ModelSpec, Predict, Prediction
from serving.tensors import DT_STRING, tf_dtype, to_numpy

log = logging.getLogger("serving.modelserver")

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def version_and_label(model_spec: Any) -> tuple[int | None, str | None]:
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return model_spec.version.value, None
    if choice == "version_label":
        return None, model_spec.version_label
    return None, None


def to_proto_field(array: np.ndarray, out: Any) -> None:
    """Tensor -> TensorProto with typed ``*_val`` fields, as TF Serving's Predict answers (AsProtoField)."""
    out.dtype = tf_dtype(array.dtype)
    for size in array.shape:
        out.tensor_shape.dim.add().size = size
    flat = array.reshape(-1)
    kind = array.dtype.kind
    if out.dtype == DT_STRING:
        out.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist())
    elif array.dtype == np.float32:
        out.float_val.extend(flat.tolist())
    elif array.dtype == np.float64:
        out.double_val.extend(flat.tolist())
    elif array.dtype == np.float16:
        out.half_val.extend(flat.view(np.uint16).tolist())
    elif array.dtype == np.int64:
        out.int64_val.extend(flat.tolist())
    elif array.dtype == np.uint64:
        out.uint64_val.extend(flat.tolist())
    elif array.dtype == np.uint32:
        out.uint32_val.extend(flat.tolist())
    elif kind == "b":
        out.bool_val.extend(flat.tolist())
    elif kind in "iu":
        out.int_val.extend(flat.tolist())
    else:
        raise InvalidInput(f"Cannot serialize output of dtype {array.dtype}")


# A tensor's decoded size is bounded: a short *_val list broadcast over a huge shape (as
# tf.make_ndarray allows) must not exhaust the server's memory.
MAX_TENSOR_BYTES = 1 << 30


def decode_tensor(alias: str, tensor: Any) -> np.ndarray:
    if not tensor.tensor_content:
        count = 1
        for dim in tensor.tensor_shape.dim:
            count *= max(int(dim.size), 0)
        if count * 8 > MAX_TENSOR_BYTES:
            raise InvalidInput(
                f"Input {alias}: a tensor of shape [{','.join(str(d.size) for d in tensor.tensor_shape.dim)}] "
                f"is larger than the {MAX_TENSOR_BYTES} byte limit"
            )
    return to_numpy(tensor)


def read_tfrecords(path: Path) -> Iterator[bytes]:
    """Records of a TFRecord file (length, crc, data, crc); CRCs are not checked."""
    with path.open("rb") as stream:
        while header := stream.read(12):
            if len(header) < 12:
                raise ValueError(f"truncated TFRecord header in {path}")
            (length,) = struct.unpack("<Q", header[:8])
            data = stream.read(length)
            if len(data) < length or len(stream.read(4)) < 4:
                raise ValueError(f"truncated TFRecord in {path}")
            yield data


class ModelServer:
    def __init__(
        self,
        manager: ServableManager,
        executor: Executor,
        metrics: Metrics,
        batching: BatchingOptions | None = None,
        warmup_iterations: int = 1,
    ) -> None:
        self.manager = manager
        self.executor = executor
        self.metrics = metrics
        self.batching = batching
        self.warmup_iterations = max(1, warmup_iterations)

    # ---- predict -------------------------------------------------------------------------------

    async def run_predict(
        self,
        entry: ServableVersion,
        signature: Signature,
        inputs: Mapping[str, np.ndarray],
        aliases: Sequence[str],
    ) -> dict[str, np.ndarray]:
        """Checked inputs -> outputs on one held version, batched when batching is on. Every runtime
        call of every request kind goes through ``inference.conform_inputs`` first."""
        inference.check_predict_inputs(signature, inputs)
        conformed = inference.conform_inputs(signature, inputs)
        checked = conformed.inputs
        batched = self.batching is not None and signature.batchable and batch_key(checked) is not None
        model = entry.runtime
        started = time.perf_counter()
        try:
            if batched:
                batcher = self._batcher(entry, signature)
                outputs = await batcher.submit(checked)
                return conformed.restore({alias: outputs[alias] for alias in aliases})
            loop = asyncio.get_running_loop()
            with tracing.span("runtime", {"tensorgate.platform": model.platform}):
                outputs = await loop.run_in_executor(
                    self.executor, inference.predict_in_slices, model.predict, signature, checked, aliases
                )
            return conformed.restore(outputs)
        finally:
            self.metrics.runtime_latency.observe(
                (time.perf_counter() - started) * 1e6, entry.model_name, "Predict", model.platform
            )

    def _batcher(self, entry: ServableVersion, signature: Signature) -> Batcher:
        batchers: dict[str, Batcher] = entry.extras.setdefault("batchers", {})
        batcher = batchers.get(signature.name)
        if batcher is None:
            assert self.batching is not None
            model, every_output = entry.runtime, sorted(signature.outputs)

            def run(merged: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
                return model.predict(signature, merged, every_output)

            batcher = Batcher(run, self.batching, self.executor, self.metrics, entry.model_name)
            batchers[signature.name] = batcher
        return batcher

    async def predict(self, request: Any) -> Any:
        """gRPC's Predict: the request's tensors decoded once, then the one prediction path; the answer's
        tensors in typed ``*_val`` fields, as TF Serving writes them."""
        spec = ModelSpec.from_proto(request.model_spec)
        with self.manager.handle(spec.name, spec.version, spec.label) as entry:
            signature_name, signature = inference.signature_for(entry.runtime, spec.signature)
            inputs = {alias: decode_tensor(alias, tensor) for alias, tensor in request.inputs.items()}
            decoded = Predict(spec, inputs, tuple(request.output_filter))
            prediction = await self._predict_on(entry, signature_name, signature, decoded)
        response = protos.PredictResponse()
        inference.fill_model_spec(response.model_spec, entry.model_name, entry.version, signature_name)
        for alias, array in prediction.outputs.items():
            to_proto_field(array, response.outputs[alias])
        return response

    async def predict_arrays(self, request: Predict) -> Prediction:
        """The one prediction path for a decoded request (REST JSON, or any other front)."""
        spec = request.spec
        with self.manager.handle(spec.name, spec.version, spec.label) as entry:
            signature_name, signature = inference.signature_for(entry.runtime, spec.signature)
            return await self._predict_on(entry, signature_name, signature, request)

    async def _predict_on(
        self, entry: ServableVersion, signature_name: str, signature: Signature, request: Predict
    ) -> Prediction:
        aliases = inference.output_aliases(signature, list(request.output_filter))
        outputs = await self.run_predict(entry, signature, request.inputs, aliases)
        arrays = {alias: np.asarray(outputs[alias]) for alias in aliases}
        return Prediction(arrays, entry.model_name, entry.version, signature_name)

    # ---- classify / regress / multi-inference --------------------------------------------------

    async def classify(self, request: Any) -> Any:
        return await self._in_thread(self._classify_sync, request)

    async def regress(self, request: Any) -> Any:
        return await self._in_thread(self._regress_sync, request)

    async def multi_inference(self, request: Any) -> Any:
        if not request.tasks:
            raise InvalidInput("MultiInferenceRequest must contain at least one task")
        return await self._in_thread(self._multi_inference_sync, request)

    async def _in_thread(self, function: Any, request: Any) -> Any:
        spec = request.tasks[0].model_spec if hasattr(request, "tasks") and request.tasks else request.model_spec
        version, label = version_and_label(spec)
        with self.manager.handle(spec.name, version, label) as entry:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, function, entry, request)

    def _classify_sync(self, entry: ServableVersion, request: Any) -> Any:
        signature_name, signature = inference.signature_for(entry.runtime, request.model_spec.signature_name)
        response = protos.ClassificationResponse()
        self._classify_into(entry, signature, request.input, response.result)
        inference.fill_model_spec(response.model_spec, entry.model_name, entry.version, signature_name)
        return response

    def _classify_into(self, entry: ServableVersion, signature: Signature, request_input: Any, result: Any) -> None:
        input_alias, output_names = inference.classification_plan(signature)
        examples = inference.serialized_examples(request_input)
        checked = inference.conform_inputs(signature, {input_alias: examples}).inputs
        outputs = entry.runtime.predict(signature, checked, output_names)
        inference.classification_result(outputs, len(examples), result)

    def _regress_sync(self, entry: ServableVersion, request: Any) -> Any:
        signature_name, signature = inference.signature_for(entry.runtime, request.model_spec.signature_name)
        response = protos.RegressionResponse()
        self._regress_into(entry, signature, request.input, response.result)
        inference.fill_model_spec(response.model_spec, entry.model_name, entry.version, signature_name)
        return response

    def _regress_into(self, entry: ServableVersion, signature: Signature, request_input: Any, result: Any) -> None:
        input_alias, output_name = inference.regression_plan(signature)
        examples = inference.serialized_examples(request_input)
        checked = inference.conform_inputs(signature, {input_alias: examples}).inputs
        outputs = entry.runtime.predict(signature, checked, [output_name])
        inference.regression_result(outputs[output_name], len(examples), result)

    def _multi_inference_sync(self, entry: ServableVersion, request: Any) -> Any:
        if not request.tasks:
            raise InvalidInput("MultiInferenceRequest must contain at least one task")
        seen: set[str] = set()
        plans = []
        for task in request.tasks:
            if task.model_spec.name != entry.model_name:
                raise InvalidInput("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            signature_name, signature = inference.signature_for(entry.runtime, task.model_spec.signature_name)
            if signature_name in seen:
                raise InvalidInput(f"Duplicate evaluation of signature: {signature_name}")
            seen.add(signature_name)
            if task.method_name not in (inference.METHODS["classify"], inference.METHODS["regress"]):
                raise InvalidInput(f"Unsupported signature method_name: {task.method_name}")
            if inference.METHOD_NAME_CHECK["enabled"] and signature.method_name != task.method_name:
                raise InvalidInput(
                    f"Signature method_name {signature.method_name} does not match task method_name {task.method_name}"
                )
            plans.append((signature_name, signature))
        response = protos.MultiInferenceResponse()
        for (signature_name, signature), task in zip(plans, request.tasks, strict=True):
            result = response.results.add()
            inference.fill_model_spec(result.model_spec, entry.model_name, entry.version, signature_name)
            if task.method_name == inference.METHODS["classify"]:
                self._classify_into(entry, signature, request.input, result.classification_result)
            else:
                self._regress_into(entry, signature, request.input, result.regression_result)
        return response

    # ---- metadata and status -------------------------------------------------------------------

    def metadata(self, request: Any) -> Any:
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        if not request.metadata_field:
            raise InvalidInput("GetModelMetadataRequest must specify at least one metadata_field")
        for field_name in request.metadata_field:
            if field_name != "signature_def":
                raise InvalidInput(f"Metadata field {field_name} is not supported")
        version, label = version_and_label(request.model_spec)
        with self.manager.handle(request.model_spec.name, version, label) as entry:
            response = protos.GetModelMetadataResponse()
            inference.fill_model_spec(response.model_spec, entry.model_name, entry.version, None)
            response.metadata["signature_def"].Pack(inference.signature_def_map(entry.runtime))
            return response

    def model_status(self, request: Any) -> Any:
        if not request.HasField("model_spec"):
            raise InvalidInput("Missing ModelSpec")
        name = request.model_spec.name
        if not name:
            raise InvalidInput("Missing model name in request.")
        version, label = version_and_label(request.model_spec)
        if label:
            config = self.manager.config_of(name)
            if config is None or label not in config.version_labels:
                raise InvalidInput(f"Unrecognized servable version label: {label}")
            version = config.version_labels[label]
        response = protos.GetModelStatusResponse()
        for number, state, error in self.manager.status(name, version):
            status = response.model_version_status.add()
            status.version = number
            status.state = state
            status.status.SetInParent()  # TF Serving always reports a status (error_code OK)
            if error is not None:
                status.status.error_code = error.grpc_code.value[0]
                status.status.error_message = error.message
        return response

    async def reload_config(self, request: Any) -> Any:
        """model_service_impl.cc HandleReloadConfigRequest and server_core.cc ReloadConfig, in their words."""
        from serving.modelserver.config import ConfigError, model_platform, validate_model_server_config

        response = protos.ReloadConfigResponse()
        config = request.config
        choice = config.WhichOneof("config")
        if choice is None:
            log.info("Taking no action for empty config.")
            return response
        if choice != "model_config_list":
            raise InvalidInput(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
        old_names = set(self.manager.model_names())
        try:
            validate_model_server_config(config)
            for model in config.model_config_list.config:
                old = self.manager.config_of(model.name)
                if old is not None and model_platform(old) != model_platform(model):
                    raise ConfigError(
                        f"Illegal to change a model's platform. For model {model.name} platform was "
                        f"{model_platform(old)} and new platform requested is {model_platform(model)}"
                    )
        except ConfigError as error:
            log.error("ReloadConfig failed: %s", error.message)
            raise ServingError.from_code(getattr(grpc.StatusCode, error.code), error.message) from None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.manager.set_config, config)
        failed = self.manager.failed_new_models(old_names)
        if failed:  # ServerCore::WaitUntilModelsAvailable
            message = "Some models did not become available: {" + "".join(f"{f}, " for f in failed) + "}"
            log.error("ReloadConfig failed: %s", message)
            raise ServingError.from_code(grpc.StatusCode.UNKNOWN, message)
        response.status.error_code = 0
        return response

    # ---- warmup --------------------------------------------------------------------------------

    def warmup(self, entry: ServableVersion) -> None:
        """Replay assets.extra/tf_serving_warmup_requests before the version becomes AVAILABLE."""
        path = entry.path / WARMUP_FILE
        if not path.is_file():
            return
        count = 0
        for record in read_tfrecords(path):
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise InvalidInput(f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}")
            log_entry = protos.PredictionLog.FromString(record)
            for _ in range(self.warmup_iterations):
                self._warm_one(entry, log_entry)
        log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.", path, count)

    def _warm_one(self, entry: ServableVersion, log_entry: Any) -> None:
        kind = log_entry.WhichOneof("log_type")
        if kind == "predict_log":
            request = log_entry.predict_log.request
            _, signature = inference.signature_for(entry.runtime, request.model_spec.signature_name)
            inputs = {alias: to_numpy(tensor) for alias, tensor in request.inputs.items()}
            inference.check_predict_inputs(signature, inputs)
            checked = inference.conform_inputs(signature, inputs).inputs
            aliases = inference.output_aliases(signature, list(request.output_filter))
            entry.runtime.predict(signature, checked, aliases)
        elif kind == "classify_log":
            request = log_entry.classify_log.request
            _, signature = inference.signature_for(entry.runtime, request.model_spec.signature_name)
            self._classify_into(entry, signature, request.input, protos.ClassificationResponse().result)
        elif kind == "regress_log":
            request = log_entry.regress_log.request
            _, signature = inference.signature_for(entry.runtime, request.model_spec.signature_name)
            self._regress_into(entry, signature, request.input, protos.RegressionResponse().result)
        elif kind == "multi_inference_log":
            self._multi_inference_sync(entry, log_entry.multi_inference_log.request)
        else:
            raise InvalidInput(f"Unsupported log_type for warmup: {kind}")


def error_code_name(error: ServingError) -> str:
    return str(error.grpc_code.name)
