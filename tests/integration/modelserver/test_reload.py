"""Hot reload under load, warmup, HandleReloadConfigRequest and gRPC over a Unix socket."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import text_format

from serving import protos
from serving.tensors import from_numpy, to_numpy
from tests.integration.modelserver.conftest import RunningServer
from tests.integration.modelserver.contract_models import write_tfrecords

pytestmark = pytest.mark.slow

IMAGE = np.full((1, 28, 28, 1), 127.0, np.float32)


@pytest.fixture(scope="module")
def base(contract_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("reload") / "cnn"
    shutil.copytree(contract_repo / "cnn" / "1", directory / "1")
    return directory


@pytest.fixture(scope="module")
def socket_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sock") / "modelserver.sock"


@pytest.fixture(scope="module")
def server(launch, base: Path, socket_path: Path) -> RunningServer:
    return launch(
        [
            "--model_name=cnn",
            f"--model_base_path={base}",
            "--file_system_poll_wait_seconds=1",
            "--enable_batching",
            f"--grpc_socket_path={socket_path}",
        ]
    )


def predict_request(model: str = "cnn") -> protos.PredictRequest:
    request = protos.PredictRequest()
    request.model_spec.name = model
    from_numpy(IMAGE, request.inputs["image"])
    return request


def warmup_records(count: int) -> list[bytes]:
    records = []
    for _ in range(count):
        log = protos.PredictionLog()
        log.predict_log.request.CopyFrom(predict_request())
        records.append(log.SerializeToString())
    return records


def test_new_version_swaps_in_under_load_without_a_failed_request(
    server: RunningServer, base: Path, contract_repo: Path
) -> None:
    stop = threading.Event()
    errors: list[Exception] = []
    answers: list[tuple[float, int, float]] = []  # (time, version, first probability)
    lock = threading.Lock()

    def client() -> None:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = protos.PREDICTION_SERVICE.stub(channel)
            while not stop.is_set():
                try:
                    response = stub.Predict(predict_request(), timeout=30)
                except grpc.RpcError as error:
                    errors.append(error)
                    continue
                probability = float(to_numpy(response.outputs["probabilities"])[0, 0])
                with lock:
                    answers.append((time.monotonic(), response.model_spec.version.value, probability))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        incoming = base / ".incoming-2"
        shutil.copytree(contract_repo / "cnn" / "2", incoming)
        write_tfrecords(incoming / "assets.extra" / "tf_serving_warmup_requests", warmup_records(2))
        os.rename(incoming, base / "2")  # versions appear atomically
        swapped_at = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with lock:
                recent = [version for _, version, _ in answers[-8:]]
            if len(recent) == 8 and set(recent) == {2}:
                swapped_at = time.monotonic()
                break
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert swapped_at is not None, "answers never switched to version 2"
    versions = {version for _, version, _ in answers}
    assert versions == {1, 2}
    first = {version: probability for _, version, probability in answers}
    assert first[1] != first[2]  # the new weights answer
    assert all(version == 2 for moment, version, _ in answers if moment > swapped_at)
    status = httpx.get(f"{server.rest}/v1/models/cnn").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "END")]
    assert "tf_serving_warmup_requests. Number of warmup records read: 2." in server.log()
    assert "Unloading servable version {name: cnn version: 1}" in server.log()


def test_grpc_over_unix_socket(server: RunningServer, socket_path: Path) -> None:
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        response = protos.PREDICTION_SERVICE.stub(channel).Predict(predict_request(), timeout=30)
    assert response.model_spec.name == "cnn"


def test_handle_reload_config_replaces_the_served_set(server: RunningServer, base: Path, contract_repo: Path) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        models = protos.MODEL_SERVICE.stub(channel)
        prediction = protos.PREDICTION_SERVICE.stub(channel)
        request = protos.ReloadConfigRequest()
        text_format.Parse(
            f'model_config_list {{ config {{ name: "cnn_onnx" base_path: "{contract_repo / "cnn_onnx"}" '
            'model_platform: "onnx" } }',
            request.config,
        )
        response = models.HandleReloadConfigRequest(request, timeout=120)
        assert response.status.error_code == 0
        assert prediction.Predict(predict_request("cnn_onnx"), timeout=30).model_spec.version.value == 2
        with pytest.raises(grpc.RpcError) as caught:
            prediction.Predict(predict_request("cnn"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        bad = protos.ReloadConfigRequest()
        text_format.Parse(
            'model_config_list { config { name: "x" base_path: "/x" model_platform: "caffe" } }', bad.config
        )
        with pytest.raises(grpc.RpcError) as rejected:
            models.HandleReloadConfigRequest(bad, timeout=30)
        assert rejected.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rejected.value.details() == "Model x requests unsupported platform caffe"  # server_core.cc
        assert prediction.Predict(predict_request("cnn_onnx"), timeout=30).model_spec.name == "cnn_onnx"


def test_reload_config_refusals_in_server_core_words(
    server: RunningServer, contract_repo: Path, tmp_path: Path
) -> None:
    """server_core.cc ReloadConfig: ValidateModelConfigList, ValidateNoModelsChangePlatforms and
    WaitUntilModelsAvailable ("Some models did not become available", UNKNOWN); the served set stays."""
    onnx = f'config {{ name: "cnn_onnx" base_path: "{contract_repo / "cnn_onnx"}" model_platform: "onnx" }}'
    (tmp_path / "broken" / "1").mkdir(parents=True)
    cases = [
        (
            f"model_config_list {{ {onnx} {onnx} }}",
            grpc.StatusCode.INVALID_ARGUMENT,
            "Illegal to list model cnn_onnx multiple times in config list",
        ),
        (
            onnx.replace('"onnx"', '"tensorflow"').join(["model_config_list { ", " }"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Illegal to change a model's platform. For model cnn_onnx platform was onnx and new platform "
            "requested is tensorflow",
        ),
        (
            f'model_config_list {{ {onnx} config {{ name: "broken" base_path: "{tmp_path / "broken"}" '
            'model_platform: "tensorflow" } }',
            grpc.StatusCode.UNKNOWN,
            "Some models did not become available: {{name: broken version: 1}, }",
        ),
    ]
    with grpc.insecure_channel(server.grpc_target) as channel:
        models = protos.MODEL_SERVICE.stub(channel)
        prediction = protos.PREDICTION_SERVICE.stub(channel)
        first = protos.ReloadConfigRequest()
        text_format.Parse(f"model_config_list {{ {onnx} }}", first.config)
        models.HandleReloadConfigRequest(first, timeout=120)
        for text, code, message in cases:
            request = protos.ReloadConfigRequest()
            text_format.Parse(text, request.config)
            with pytest.raises(grpc.RpcError) as caught:
                models.HandleReloadConfigRequest(request, timeout=120)
            assert (caught.value.code(), caught.value.details()) == (code, message)
            assert prediction.Predict(predict_request("cnn_onnx"), timeout=30).model_spec.name == "cnn_onnx"
