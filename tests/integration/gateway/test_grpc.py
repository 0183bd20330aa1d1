"""The gRPC front, called by an unchanged TF Serving client (tensorflow-serving-api's own stubs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from serving.tfserving.encode import error_body
from tests.integration.gateway.conftest import FakeUpstream, Gateway

pytestmark = pytest.mark.slow

tf = pytest.importorskip("tensorflow")
apis = pytest.importorskip("tensorflow_serving.apis")
from tensorflow_serving.apis import (  # noqa: E402
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def gateway(tmp_module: Path) -> Iterator[Gateway]:
    upstream = FakeUpstream(tmp_module, "cnn,lstm,transformer", shift={"lstm": 1})
    config = {
        "repo": None,
        "upstreams": {"default": {"targets": [upstream.target]}},
        "servables": {"cnn": "default", "lstm": "default", "transformer": "default"},
        "ensembles": {"vote": {"members": ["cnn", "lstm", "transformer"], "voting": "hard"}},
        "api_keys": [KEY],
        "limits": {"max_batch_size": 2000},
    }
    gw = Gateway(tmp_module, config)
    gw.wait_ready()
    yield gw
    gw.stop()
    upstream.stop()


@pytest.fixture(scope="module")
def channel(gateway: Gateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        yield channel


AUTH = (("x-api-key", KEY),)


def _predict_request(name: str, value: float, batch: int = 1) -> Any:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(np.full((batch, 28, 28, 1), value, np.float32)))
    return request


def test_predict_with_tf_serving_stubs(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response, call = stub.Predict.with_call(
        _predict_request("cnn", 100.0, batch=2), metadata=(*AUTH, ("x-request-id", "grpc-req-7")), timeout=10
    )
    assert tf.make_ndarray(response.outputs["class_id"]).tolist() == [3, 3]
    assert tf.make_ndarray(response.outputs["probabilities"]).shape == (2, 10)
    assert response.model_spec.name == "cnn" and response.model_spec.version.value == 1
    trailing = dict(call.trailing_metadata())
    assert trailing["x-request-id"] == "grpc-req-7"
    assert trailing["x-servable"] == "cnn"


def test_messages_over_grpcs_default_4_mib_pass_both_ways(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = _predict_request("cnn", 200.0, batch=1500)
    assert request.ByteSize() > 4 * 1024 * 1024
    response = stub.Predict(request, metadata=AUTH, timeout=30)
    assert tf.make_ndarray(response.outputs["class_id"]).tolist() == [7] * 1500


def test_ensemble_hard_vote_over_grpc(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    response = stub.Predict(_predict_request("vote", 100.0), metadata=AUTH, timeout=10)
    assert tf.make_ndarray(response.outputs["class_id"]).tolist() == [3]
    assert tf.make_ndarray(response.outputs["member_class_ids"]).tolist() == [[3, 4, 3]]
    assert response.model_spec.name == "vote"


def test_errors_keep_tf_servings_codes_and_messages(channel: grpc.Channel) -> None:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as missing:
        stub.Predict(_predict_request("nope", 1.0), metadata=AUTH, timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing.value.details() == "Servable not found for request: Latest(nope)"
    with pytest.raises(grpc.RpcError) as unauthenticated:
        stub.Predict(_predict_request("cnn", 1.0), metadata=(("x-api-key", "wrong"),), timeout=10)
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert unauthenticated.value.details() == "Missing or invalid API key"
    with pytest.raises(grpc.RpcError) as too_many:
        stub.Predict(_predict_request("cnn", 1.0, batch=2001), metadata=AUTH, timeout=10)
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert too_many.value.details() == "Input 'image' has batch size 2001, over the limit of 2000"
    with pytest.raises(grpc.RpcError) as unimplemented:
        stub.Classify(apis.classification_pb2.ClassificationRequest(), metadata=AUTH, timeout=10)
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_metadata_and_status_with_tf_serving_stubs(channel: grpc.Channel) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "cnn"
    request.metadata_field.append("signature_def")
    metadata = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
        request, metadata=AUTH, timeout=10
    )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert list(signatures.signature_def["serving_default"].inputs) == ["image"]
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "cnn"
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, metadata=AUTH, timeout=10)
    assert [(s.version, s.state) for s in status.model_version_status] == [(1, 30)]


def test_health_and_reflection_need_no_key(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="tensorflow.serving.PredictionService"), timeout=10
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = sorted(s.name for s in next(iter(answers)).list_services_response.service)
    assert names == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "inference.GRPCInferenceService",
        "tensorflow.serving.ModelService",
        "tensorflow.serving.PredictionService",
    ]


def test_rest_needs_the_key_too_but_health_does_not(gateway: Gateway) -> None:
    body = {"instances": [[[[1.0]] * 28] * 28]}
    missing = gateway.client.post("/v1/models/cnn:predict", json=body)
    assert missing.status_code == 401
    assert missing.content == error_body("Missing or invalid API key")
    assert gateway.client.post("/v1/models/cnn:predict", json=body, headers={"x-api-key": KEY}).status_code == 200
    bearer = gateway.client.post("/v1/models/cnn:predict", json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200
    assert gateway.client.get("/v1/models", headers={"x-api-key": "nope"}).status_code == 401
    assert gateway.client.get("/healthz").status_code == 200
    assert gateway.client.get("/readyz").status_code == 200
