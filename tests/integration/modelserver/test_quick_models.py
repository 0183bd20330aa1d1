"""The quick-trained models served as TF Serving would: a user's gRPC client and REST with httpx."""

from __future__ import annotations

import gzip
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from tests.integration.modelserver.conftest import RunningServer
from tests.integration.modelserver.test_contract_models import sample_images

pytestmark = pytest.mark.slow

MODELS = ("cnn", "lstm", "transformer", "ensemble")
LABELS = Path("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")


@pytest.fixture(scope="module")
def server(launch, quick_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    config = tmp_path_factory.mktemp("quick-config") / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{m}" base_path: "{quick_repo / m}" model_platform: "tensorflow" }}\n' for m in MODELS
        )
        + "}\n"
    )
    return launch([f"--model_config_file={config}"])


def test_user_grpc_client_gets_metadata_and_predictions(server: RunningServer) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    images = sample_images(32)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for model in MODELS:
            metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
            metadata_request.model_spec.name = model
            metadata_request.metadata_field.append("signature_def")
            signatures = get_model_metadata_pb2.SignatureDefMap()
            stub.GetModelMetadata(metadata_request, 30.0).metadata["signature_def"].Unpack(signatures)
            default = signatures.signature_def["serving_default"]
            assert default.inputs["image"].dtype == tf.float32.as_datatype_enum
            assert {"probabilities", "class_id"} <= set(default.outputs)
            assert "serving_bytes" in signatures.signature_def

            request = predict_pb2.PredictRequest()
            request.model_spec.name = model
            request.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
            response = stub.Predict(request, 60.0)
            probabilities = tf.make_ndarray(response.outputs["probabilities"])
            class_id = tf.make_ndarray(response.outputs["class_id"])
            assert probabilities.shape == (32, 10)
            np.testing.assert_array_equal(class_id, probabilities.argmax(axis=1))
            if LABELS.is_file() and model == "cnn":  # the quick transformer may still be near chance
                with gzip.open(LABELS) as stream:
                    labels = np.frombuffer(stream.read(8 + 32)[8:], np.uint8)
                assert (class_id == labels).mean() > 0.3, f"{model} is no better than chance"


def test_rest_answers_match_grpc(server: RunningServer) -> None:
    images = sample_images(4)
    with httpx.Client(base_url=server.rest, timeout=60) as client:
        for model in MODELS:
            rows = client.post(f"/v1/models/{model}:predict", json={"instances": images.tolist()})
            assert rows.status_code == 200, rows.text
            columns = client.post(f"/v1/models/{model}:predict", json={"inputs": {"image": images.tolist()}})
            assert columns.status_code == 200
            assert [p["class_id"] for p in rows.json()["predictions"]] == columns.json()["outputs"]["class_id"]
            status = client.get(f"/v1/models/{model}").json()["model_version_status"][0]
            assert (status["version"], status["state"]) == ("1", "AVAILABLE")


def test_image_bytes_signature_agrees_with_image(server: RunningServer) -> None:
    import base64
    import io

    from PIL import Image

    images = sample_images(3)
    pngs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image[:, :, 0].astype(np.uint8)).save(buffer, format="PNG")
        pngs.append({"b64": base64.b64encode(buffer.getvalue()).decode()})
    with httpx.Client(base_url=server.rest, timeout=60) as client:
        for model in MODELS:
            direct = client.post(f"/v1/models/{model}:predict", json={"instances": images.tolist()}).json()
            body = {"signature_name": "serving_bytes", "instances": pngs}
            decoded = client.post(f"/v1/models/{model}:predict", json=body)
            assert decoded.status_code == 200, decoded.text
            got = [p["class_id"] for p in decoded.json()["predictions"]]
            assert got == [p["class_id"] for p in direct["predictions"]], model
