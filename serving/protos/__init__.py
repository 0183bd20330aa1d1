"""TF Serving's protobuf messages and gRPC services, without TensorFlow.

The descriptors come from ``tfserving.binpb`` (extracted from the installed wheels by
``python -m serving.protos.build``) and are loaded into a private ``DescriptorPool``, so this module
costs a few megabytes and milliseconds where ``import tensorflow_serving.apis`` costs all of
TensorFlow. The message classes are wire-compatible with TF Serving's; a message from the official
modules can be moved across with ``SerializeToString``/``FromString``.

The same pool holds the Open Inference Protocol's (KServe v2) ``inference`` package from
``inference.binpb`` (extracted from tritonclient's generated modules; see ``build.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from serving.errors import InvalidInput

DESCRIPTOR_SET_PATH = Path(__file__).with_name("tfserving.binpb")
INFERENCE_SET_PATH = Path(__file__).with_name("inference.binpb")


def _load_pool(*paths: Path) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for path in paths:
        for file_proto in descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file:
            pool.Add(file_proto)
    return pool


POOL = _load_pool(DESCRIPTOR_SET_PATH, INFERENCE_SET_PATH)


def message_class(full_name: str) -> Any:
    """The generated class for a message type, e.g. ``tensorflow.serving.PredictRequest``."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


# tensorflow
TensorProto = message_class("tensorflow.TensorProto")
TensorShapeProto = message_class("tensorflow.TensorShapeProto")
Example = message_class("tensorflow.Example")
SignatureDef = message_class("tensorflow.SignatureDef")
TensorInfo = message_class("tensorflow.TensorInfo")
DataType = POOL.FindEnumTypeByName("tensorflow.DataType")

# tensorflow.serving
ModelSpec = message_class("tensorflow.serving.ModelSpec")
PredictRequest = message_class("tensorflow.serving.PredictRequest")
PredictResponse = message_class("tensorflow.serving.PredictResponse")
ClassificationRequest = message_class("tensorflow.serving.ClassificationRequest")
ClassificationResponse = message_class("tensorflow.serving.ClassificationResponse")
RegressionRequest = message_class("tensorflow.serving.RegressionRequest")
RegressionResponse = message_class("tensorflow.serving.RegressionResponse")
MultiInferenceRequest = message_class("tensorflow.serving.MultiInferenceRequest")
MultiInferenceResponse = message_class("tensorflow.serving.MultiInferenceResponse")
GetModelMetadataRequest = message_class("tensorflow.serving.GetModelMetadataRequest")
GetModelMetadataResponse = message_class("tensorflow.serving.GetModelMetadataResponse")
SignatureDefMap = message_class("tensorflow.serving.SignatureDefMap")
GetModelStatusRequest = message_class("tensorflow.serving.GetModelStatusRequest")
GetModelStatusResponse = message_class("tensorflow.serving.GetModelStatusResponse")
ModelVersionStatus = message_class("tensorflow.serving.ModelVersionStatus")
StatusProto = message_class("tensorflow.serving.StatusProto")
ReloadConfigRequest = message_class("tensorflow.serving.ReloadConfigRequest")
ReloadConfigResponse = message_class("tensorflow.serving.ReloadConfigResponse")
ModelServerConfig = message_class("tensorflow.serving.ModelServerConfig")
ModelConfigList = message_class("tensorflow.serving.ModelConfigList")
ModelConfig = message_class("tensorflow.serving.ModelConfig")
PredictionLog = message_class("tensorflow.serving.PredictionLog")
PredictLog = message_class("tensorflow.serving.PredictLog")

# inference (Open Inference Protocol v2)
ServerLiveRequest = message_class("inference.ServerLiveRequest")
ServerLiveResponse = message_class("inference.ServerLiveResponse")
ServerReadyRequest = message_class("inference.ServerReadyRequest")
ServerReadyResponse = message_class("inference.ServerReadyResponse")
ModelReadyRequest = message_class("inference.ModelReadyRequest")
ModelReadyResponse = message_class("inference.ModelReadyResponse")
ServerMetadataRequest = message_class("inference.ServerMetadataRequest")
ServerMetadataResponse = message_class("inference.ServerMetadataResponse")
ModelMetadataRequest = message_class("inference.ModelMetadataRequest")
ModelMetadataResponse = message_class("inference.ModelMetadataResponse")
ModelInferRequest = message_class("inference.ModelInferRequest")
ModelInferResponse = message_class("inference.ModelInferResponse")
InferTensorContents = message_class("inference.InferTensorContents")
InferParameter = message_class("inference.InferParameter")


@dataclass(frozen=True)
class Method:
    name: str
    request: Any
    response: Any

    def path(self, service: str) -> str:
        return f"/{service}/{self.name}"


@dataclass(frozen=True)
class Service:
    """A gRPC service: its full name and unary methods with their message classes."""

    name: str
    methods: tuple[Method, ...]

    def method(self, name: str) -> Method:
        for method in self.methods:
            if method.name == name:
                return method
        raise KeyError(f"{self.name} has no method {name!r}")

    def stub(self, channel: grpc.Channel) -> Any:
        """A client stub: one attribute per method, like the generated ``*Stub`` classes."""
        return _Stub(
            {
                m.name: channel.unary_unary(
                    m.path(self.name),
                    request_serializer=m.request.SerializeToString,
                    response_deserializer=m.response.FromString,
                )
                for m in self.methods
            }
        )

    def handler(self, implementations: Mapping[str, Callable[..., Any]]) -> grpc.GenericRpcHandler:
        """A generic handler serving the given method implementations (sync or async callables).

        Request bytes that do not parse reach the implementation as an ``Undecodable`` (whose ``error``
        to raise is INVALID_ARGUMENT), instead of grpc answering UNKNOWN with a traceback in the log.
        """
        handlers = {
            m.name: grpc.unary_unary_rpc_method_handler(
                implementations[m.name],
                request_deserializer=_lenient(m.request.FromString),
                response_serializer=m.response.SerializeToString,
            )
            for m in self.methods
            if m.name in implementations
        }
        return grpc.method_handlers_generic_handler(self.name, handlers)


class Undecodable:
    """Stands in for request bytes that are not the method's message."""

    def __init__(self, message: str) -> None:
        self.error = InvalidInput(message)


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as error:
            return Undecodable(f"Could not parse the request message: {error}")

    return deserialize


class _Stub:
    def __init__(self, callables: Mapping[str, Any]) -> None:
        self.__dict__.update(callables)


PREDICTION_SERVICE = Service(
    "tensorflow.serving.PredictionService",
    (
        Method("Classify", ClassificationRequest, ClassificationResponse),
        Method("Regress", RegressionRequest, RegressionResponse),
        Method("Predict", PredictRequest, PredictResponse),
        Method("MultiInference", MultiInferenceRequest, MultiInferenceResponse),
        Method("GetModelMetadata", GetModelMetadataRequest, GetModelMetadataResponse),
    ),
)
MODEL_SERVICE = Service(
    "tensorflow.serving.ModelService",
    (
        Method("GetModelStatus", GetModelStatusRequest, GetModelStatusResponse),
        Method("HandleReloadConfigRequest", ReloadConfigRequest, ReloadConfigResponse),
    ),
)


def _unary_methods(service: str) -> tuple[Method, ...]:
    descriptor = POOL.FindServiceByName(service)
    return tuple(
        Method(m.name, message_class(m.input_type.full_name), message_class(m.output_type.full_name))
        for m in descriptor.methods
        if not m.client_streaming and not m.server_streaming
    )


# Every unary method of Triton's superset of the protocol; ModelStreamInfer (a stream) is left out.
INFERENCE_SERVICE = Service("inference.GRPCInferenceService", _unary_methods("inference.GRPCInferenceService"))

__all__ = [name for name in dir() if not name.startswith("_")]
_ = Message  # re-exported for typing by callers
