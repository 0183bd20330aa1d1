"""``server.grpc_experiments`` reaches gRPC's core in the gateway process (it is read when grpc loads)."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import numpy as np
import pytest

from serving import protos
from serving.tensors import from_numpy, to_numpy
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

API_KEY = "k" * 32


def test_the_configured_experiments_reach_grpc_and_both_fronts_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    upstream = FakeUpstream(tmp_path, "cnn")
    # gRPC's core names an experiment it does not know in its log: proof that the value got there
    experiments = "-event_engine_client,tensorgate_no_such_experiment"
    gateway = Gateway(
        tmp_path,
        {
            "upstreams": {"default": {"targets": [upstream.target]}},
            "servables": {"cnn": "default"},
            "api_keys": [API_KEY],
            "server": {"grpc_experiments": experiments},
        },
    )
    try:
        gateway.wait_ready()
        answer = gateway.client.post(
            "/v1/models/cnn:predict", json=image_instances(100.0), headers={"x-api-key": API_KEY}
        )
        assert answer.status_code == 200 and answer.json()["predictions"][0]["class_id"] == 3
        request = protos.PredictRequest()
        request.model_spec.name = "cnn"
        from_numpy(np.full((1, 28, 28, 1), 100.0, np.float32), out=request.inputs["image"])
        with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            reply = protos.PREDICTION_SERVICE.stub(channel).Predict(
                request, timeout=10, metadata=(("x-api-key", API_KEY),)
            )
        assert to_numpy(reply.outputs["class_id"]).tolist() == [3]
    finally:
        status = gateway.stop(signal.SIGTERM)
        upstream.stop()
    assert status == 0
    log = gateway.log()
    assert "Unknown experiment: tensorgate_no_such_experiment" in log
    assert f"gRPC experiments '{experiments}'" in log


def test_the_default_turns_the_event_engine_client_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    upstream = FakeUpstream(tmp_path, "cnn")
    gateway = Gateway(
        tmp_path, {"upstreams": {"default": {"targets": [upstream.target]}}, "servables": {"cnn": "default"}}
    )
    try:
        gateway.wait_ready()
        answer = gateway.client.post("/v1/models/cnn:predict", json=image_instances(100.0))
        assert answer.status_code == 200
    finally:
        gateway.stop(signal.SIGTERM)
        upstream.stop()
    assert "gRPC experiments '-event_engine_client'" in gateway.log()
