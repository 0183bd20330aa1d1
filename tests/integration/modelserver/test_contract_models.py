"""The model contract over every runtime, a user's TF Serving client, batching, and bad input."""

from __future__ import annotations

import base64
import gzip
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from serving import protos
from serving.tensors import from_numpy, to_numpy
from tests.integration.modelserver.conftest import RunningServer

pytestmark = pytest.mark.slow

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def sample_images(count: int) -> np.ndarray:
    """Real Fashion-MNIST test images (float32 0..255, [n,28,28,1]); random ones if not installed."""
    if FASHION_MNIST.is_file():
        with gzip.open(FASHION_MNIST) as stream:
            raw = stream.read(16 + count * 784)[16:]
        return np.frombuffer(raw, np.uint8).reshape(count, 28, 28, 1).astype(np.float32)
    return np.random.default_rng(0).integers(0, 256, (count, 28, 28, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def server(launch, contract_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    directory = tmp_path_factory.mktemp("contract-config")
    plan = directory / "cnn_trt" / "1" / "model.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"not an engine")
    config = directory / "models.config"
    entries = [
        ("cnn", contract_repo / "cnn", "tensorflow"),
        ("cnn_dynamic", contract_repo / "cnn_dynamic", "tflite"),
        ("cnn_onnx", contract_repo / "cnn_onnx", "onnx"),
        ("cnn_trt", directory / "cnn_trt", "tensorrt"),
    ]
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{name}" base_path: "{path}" model_platform: "{platform}" }}\n'
            for name, path, platform in entries
        )
        + "}\n"
    )
    batching = directory / "batching.config"
    batching.write_text(
        "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 20000 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 1 }\n"
        "allowed_batch_sizes: 8\nallowed_batch_sizes: 16\nallowed_batch_sizes: 32\n"
    )
    monitoring = directory / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n')
    return launch(
        [
            f"--model_config_file={config}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            f"--monitoring_config_file={monitoring}",
        ]
    )


@pytest.fixture(scope="module")
def http(server: RunningServer):
    with httpx.Client(base_url=server.rest, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def prediction(server: RunningServer):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield protos.PREDICTION_SERVICE.stub(channel)


def predict(prediction, model: str, images: np.ndarray) -> dict[str, np.ndarray]:
    request = protos.PredictRequest()
    request.model_spec.name = model
    from_numpy(images, request.inputs["image"])
    response = prediction.Predict(request, timeout=60)
    return {alias: to_numpy(tensor) for alias, tensor in response.outputs.items()}


def test_tf_serving_client_as_a_user_writes_it(server: RunningServer) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    images = sample_images(4)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
        metadata_request.model_spec.name = "cnn"
        metadata_request.metadata_field.append("signature_def")
        metadata = stub.GetModelMetadata(metadata_request, 30.0)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        metadata.metadata["signature_def"].Unpack(signatures)
        serving_default = signatures.signature_def["serving_default"]
        assert set(serving_default.inputs) == {"image"}
        assert set(serving_default.outputs) == {"probabilities", "class_id"}

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "cnn"
        request.model_spec.signature_name = "serving_default"
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
        response = stub.Predict(request, 30.0)
    probabilities = tf.make_ndarray(response.outputs["probabilities"])
    class_id = tf.make_ndarray(response.outputs["class_id"])
    assert probabilities.shape == (4, 10) and class_id.dtype == np.int64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(class_id, probabilities.argmax(axis=1))
    assert response.model_spec.version.value == 2


def test_rest_row_format_and_image_bytes(http) -> None:
    images = sample_images(2)
    answer = http.post("/v1/models/cnn:predict", json={"instances": images.tolist()})
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    assert [sorted(p) for p in predictions] == [["class_id", "probabilities"]] * 2
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image[:, :, 0].astype(np.uint8)).save(buffer, format="PNG")
        pngs.append({"b64": base64.b64encode(buffer.getvalue()).decode()})
    from_bytes = http.post("/v1/models/cnn:predict", json={"signature_name": "serving_bytes", "instances": pngs})
    assert from_bytes.status_code == 200, from_bytes.text
    assert [p["class_id"] for p in from_bytes.json()["predictions"]] == [p["class_id"] for p in predictions]


def test_every_runtime_answers_the_same_classes(prediction) -> None:
    images = sample_images(64)
    reference = predict(prediction, "cnn", images[:32])
    reference_rest = predict(prediction, "cnn", images[32:])
    expected_classes = np.concatenate([reference["class_id"], reference_rest["class_id"]])
    expected_probabilities = np.concatenate([reference["probabilities"], reference_rest["probabilities"]])
    for model in ("cnn_dynamic", "cnn_onnx"):
        outputs = {
            k: np.concatenate([predict(prediction, model, part)[k] for part in (images[:32], images[32:])])
            for k in ("class_id", "probabilities")
        }
        np.testing.assert_array_equal(outputs["class_id"], expected_classes, err_msg=model)
        np.testing.assert_allclose(outputs["probabilities"], expected_probabilities, atol=1e-5, err_msg=model)


def test_tensorrt_without_gpu_fails_to_load_clearly_and_others_serve(http) -> None:
    status = http.get("/v1/models/cnn_trt").json()["model_version_status"][0]
    assert status["state"] == "END"
    assert "Cannot load TensorRT engine" in status["status"]["error_message"]
    assert http.get("/v1/models/cnn_onnx").json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_onnx_and_tflite_metadata(http) -> None:
    for model in ("cnn_onnx", "cnn_dynamic"):
        signature = http.get(f"/v1/models/{model}/metadata").json()["metadata"]["signature_def"]["signature_def"]
        inputs = signature["serving_default"]["inputs"]["image"]
        assert inputs["dtype"] == "DT_FLOAT"
        assert [d["size"] for d in inputs["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]


def test_batching_merges_concurrent_requests_and_returns_each_its_rows(http, prediction) -> None:
    images = sample_images(24)
    expected = predict(prediction, "cnn", images)["class_id"]
    before = metric_sums(http, "cnn")

    def one(index: int) -> int:
        return int(predict(prediction, "cnn", images[index : index + 1])["class_id"][0])

    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(one, range(24)))
    assert answers == expected.tolist()
    after = metric_sums(http, "cnn")
    batches = after["count"] - before["count"]
    rows = after["sum"] - before["sum"]
    assert batches < 24, f"24 concurrent requests ran as {batches} batches"
    assert rows >= 24 and rows % 8 == 0  # padded to allowed_batch_sizes


def metric_sums(http, model: str) -> dict[str, float]:
    text = http.get("/monitoring/prometheus/metrics").text
    values = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for kind in values:
            prefix = f':tensorflow:serving:batching:processed_batch_size_{kind}{{model_name="{model}",'
            if line.startswith(prefix):
                values[kind] = float(line.rsplit(" ", 1)[1])
    return values


@pytest.mark.parametrize(
    ("model", "body", "status", "error_part"),
    [
        ("cnn", {"instances": [[1.0, 2.0]]}, 400, "Input image has shape [1,2] but the signature expects [-1,28,28,1]"),
        ("cnn", {"instances": [[[0.0] * 28] * 28]}, 400, "Input image has shape [1,28,28] but the signature expects"),
        ("cnn_dynamic", {"instances": [[[0.0] * 28] * 28]}, 400, "Input image has shape [1,28,28]"),
        ("cnn_dynamic", {"instances": [[1.0, 2.0]]}, 400, "Input image has shape [1,2]"),
        ("cnn_onnx", {"instances": [[1.0, 2.0]]}, 400, "Input image has shape [1,2]"),
        ("cnn_onnx", {"inputs": [[[[0.0]] * 28] * 27]}, 400, "Input image has shape [1,27,28,1]"),
        ("cnn", {"inputs": {"pixels": [1.0]}}, 400, "Missing named input: image in 'inputs' object."),
        ("cnn", {"instances": [[[["x"]] * 28] * 28]}, 400, "is not of expected type: float"),
        (
            "cnn",
            {"inputs": np.zeros((33, 28, 28, 1)).tolist()},
            400,
            "Task size 33 is larger than maximum input batch size 32",
        ),
        ("cnn", {"signature_name": "serving_bytes", "instances": [{"b64": "bm90IGEgcG5n"}]}, 400, ""),
    ],
)
def test_bad_input_gets_status_and_error(http, model: str, body: dict, status: int, error_part: str) -> None:
    answer = http.post(f"/v1/models/{model}:predict", content=json.dumps(body))
    assert answer.status_code == status, answer.text
    assert error_part in answer.json()["error"]
    assert http.post(f"/v1/models/{model}:predict", json={"instances": sample_images(1).tolist()}).status_code == 200


def test_huge_body_is_refused_and_server_stays_up(http, launch, contract_repo: Path) -> None:
    small = launch(
        [f"--model_base_path={contract_repo / 'cnn_onnx'}", "--model_name=cnn", "--rest_api_max_body_bytes=100000"]
    )
    with httpx.Client(base_url=small.rest, timeout=60) as client:
        answer = client.post("/v1/models/cnn:predict", content=b'{"instances": [' + b"0.0," * 100000 + b"0.0]}")
        assert answer.status_code == 413
        assert answer.json() == {"error": "Request body is larger than the limit of 100000 bytes"}
        assert client.post("/v1/models/cnn:predict", json={"instances": sample_images(1).tolist()}).status_code == 200
