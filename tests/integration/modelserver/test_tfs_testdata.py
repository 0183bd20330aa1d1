"""TF Serving's own test models, served by our model server, answer as tensorflow_model_server does."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from google.protobuf import text_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving import protos
from serving.tensors import from_numpy, to_numpy
from tests.integration.modelserver.conftest import RunningServer

pytestmark = pytest.mark.slow

HALF_PLUS_TWO_ROW = b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'


def write_config(testdata: Path, directory: Path) -> Path:
    """good_model_config.txt with its placeholders filled in, plus the other fixture models."""
    text = (testdata / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", str(testdata / "saved_model_half_plus_two_cpu"))
    text = text.replace("${TEST_HALF_PLUS_THREE_DIR}", str(testdata / "saved_model_half_plus_three"))
    config = text_format.Parse(text, protos.ModelServerConfig())
    models = config.model_config_list.config
    for name, folder, platform in (
        ("half_plus_two_tf2", "saved_model_half_plus_two_tf2_cpu", "tensorflow"),
        ("half_plus_two_tflite", "saved_model_half_plus_two_tflite", "tflite"),
        ("half_plus_two_tflite_sigdef", "saved_model_half_plus_two_tflite_with_sigdef", "tflite"),
        ("two_versions", "saved_model_half_plus_two_2_versions", "tensorflow"),
        ("bad", "bad_half_plus_two", "tensorflow"),
    ):
        model = models.add(name=name, base_path=str(testdata / folder), model_platform=platform)
        if name == "two_versions":
            model.model_version_policy.all.SetInParent()
            model.version_labels["stable"] = 123
            model.version_labels["canary"] = 124
    path = directory / "models.config"
    path.write_text(text_format.MessageToString(config))
    return path


@pytest.fixture(scope="module")
def server(launch, tfs_testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    config = write_config(tfs_testdata, tmp_path_factory.mktemp("config"))
    return launch(
        [
            f"--model_config_file={config}",
            "--enable_batching",
            f"--batching_parameters_file={tfs_testdata / 'batching_config.txt'}",
            f"--monitoring_config_file={tfs_testdata / 'monitoring_config.txt'}",
            "--saved_model_tags=serve",
        ]
    )


@pytest.fixture(scope="module")
def http(server: RunningServer):
    with httpx.Client(base_url=server.rest, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(server: RunningServer):
    with grpc.insecure_channel(server.grpc_target) as grpc_channel:
        yield grpc_channel


@pytest.fixture(scope="module")
def prediction(channel):
    return protos.PREDICTION_SERVICE.stub(channel)


@pytest.fixture(scope="module")
def model_service(channel):
    return protos.MODEL_SERVICE.stub(channel)


def example(x: float):
    item = protos.Example()
    item.features.feature["x"].float_list.value.append(x)
    return item


# ---- REST: predict / classify / regress ---------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["half_plus_two", "half_plus_two_tf2", "half_plus_two_tflite", "half_plus_two_tflite_sigdef"]
)
def test_rest_predict_row_format_is_byte_identical(http, model: str) -> None:
    answer = http.post(f"/v1/models/{model}:predict", content=b'{"instances": [1.0, 2.0, 5.0]}')
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.content == HALF_PLUS_TWO_ROW


def test_rest_predict_columnar_answers_outputs(http) -> None:
    answer = http.post("/v1/models/half_plus_two:predict", json={"inputs": {"x": [[1.0], [2.0], [5.0]]}})
    assert answer.status_code == 200
    assert answer.json() == {"outputs": [[2.5], [3.0], [4.5]]}


def test_rest_second_model_of_good_config(http) -> None:
    answer = http.post("/v1/models/half_plus_three:predict", json={"instances": [1.0, 2.0, 5.0]})
    assert answer.json() == {"predictions": [3.5, 4.0, 5.5]}


@pytest.mark.parametrize("model", ["half_plus_two", "half_plus_two_tf2"])
def test_rest_classify_and_regress(http, model: str) -> None:
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    classify = http.post(f"/v1/models/{model}:classify", json=body)
    assert classify.status_code == 200
    assert classify.content == b'{\n    "results": [[["", 3.0]]\n    ]\n}'
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    regress = http.post(f"/v1/models/{model}:regress", json=body)
    assert regress.status_code == 200
    assert regress.content == b'{\n    "results": [3.0]\n}'


def test_rest_versions_and_labels(http) -> None:
    for path in ("/versions/123", "/versions/124", "/labels/stable", "/labels/canary", ""):
        answer = http.post(f"/v1/models/two_versions{path}:predict", json={"instances": [2.0]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [3.0]}


# ---- REST: status and metadata -----------------------------------------------------------------


def test_rest_status_as_tf_serving(http) -> None:
    answer = http.get("/v1/models/half_plus_two")
    assert answer.status_code == 200
    assert answer.json() == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    both = http.get("/v1/models/two_versions").json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in both] == [("124", "AVAILABLE"), ("123", "AVAILABLE")]
    assert http.get("/v1/models/two_versions/labels/stable").json()["model_version_status"][0]["version"] == "123"


def test_rest_metadata_matches_fixture(http, tfs_testdata: Path) -> None:
    expected = json.loads((tfs_testdata / "half_plus_two_model_metadata.json").read_text())
    answer = http.get("/v1/models/half_plus_two/metadata")
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    assert body["metadata"] == expected["metadata"]


def test_rest_metadata_of_two_versions_matches_fixture(http, tfs_testdata: Path) -> None:
    candidates = [
        json.loads((tfs_testdata / name).read_text())
        for name in (
            "saved_model_half_plus_two_2_versions_metadata.json",
            "saved_model_half_plus_two_tf2_2_versions_metadata.json",
        )
    ]
    body = http.get("/v1/models/two_versions/versions/123/metadata").json()
    assert body["model_spec"]["version"] == "123"
    assert body["metadata"] in [candidate["metadata"] for candidate in candidates]


def test_bad_model_fails_while_others_serve(http) -> None:
    status = http.get("/v1/models/bad").json()["model_version_status"]
    assert status[0]["version"] == "123"
    assert status[0]["state"] == "END"
    assert status[0]["status"]["error_code"] == "NOT_FOUND"
    assert "Could not find SavedModel .pb or .pbtxt" in status[0]["status"]["error_message"]
    answer = http.post("/v1/models/bad:predict", json={"instances": [1.0]})
    assert answer.status_code == 404
    assert answer.json() == {"error": "Servable not found for request: Latest(bad)"}
    assert http.post("/v1/models/half_plus_two:predict", json={"instances": [1.0]}).status_code == 200


# ---- REST: errors as TF Serving sends them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        (
            "POST",
            "/v1/models/nope:predict",
            b'{"instances": [1.0]}',
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            "/v1/models/half_plus_two/versions/7:predict",
            b'{"instances": [1.0]}',
            404,
            "Servable not found for request: Specific(half_plus_two, 7)",
        ),
        (
            "POST",
            "/v1/models/two_versions/labels/nope:predict",
            b'{"instances": [1.0]}',
            400,
            "Unrecognized servable version label: nope",
        ),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            b'{"instances": [1.0], "signature_name": "nope"}',
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        ("POST", "/v1/models/half_plus_two:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("POST", "/v1/models/half_plus_two:predict", b"{}", 400, "Missing 'inputs' or 'instances' key"),
        (
            "POST",
            "/v1/models/half_plus_two:predict",
            b'{"instances": ["a"]}',
            400,
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            'JSON Value: "a" Type: String is not of expected type: float',
        ),
        (
            "POST",
            "/v1/models/half_plus_two/versions/123/labels/x:predict",
            b'{"instances": [1.0]}',
            400,
            "Malformed request: POST /v1/models/half_plus_two/versions/123/labels/x:predict",
        ),
        ("GET", "/v1/models", None, 400, "Missing model name in request."),
        ("PUT", "/v1/models/half_plus_two", b"{}", 400, "Malformed request: PUT /v1/models/half_plus_two"),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        (
            "GET",
            "/v1/models/half_plus_two/versions/9",
            None,
            404,
            "Could not find version 9 of model half_plus_two",
        ),
    ],
)
def test_rest_errors(http, method: str, path: str, body: bytes | None, status: int, error: str) -> None:
    answer = http.request(method, path, content=body)
    assert answer.status_code == status
    assert answer.json() == {"error": error}


def test_rest_both_instances_and_inputs(http) -> None:
    answer = http.post("/v1/models/half_plus_two:predict", content=b'{"instances": [1.0], "inputs": [1.0]}')
    assert answer.status_code == 400
    assert answer.json()["error"].endswith(
        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
    )


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\xff garbage",
        b'{"instances": [1.0,',
        b'{"instances": [{"b64": "@@"}]}',
        b'{"instances": [[1.0], 2.0]}',
        b"[]",
    ],
)
def test_rest_garbage_is_400_and_server_keeps_serving(http, body: bytes) -> None:
    answer = http.post("/v1/models/half_plus_two:predict", content=body)
    assert answer.status_code == 400
    assert set(answer.json()) == {"error"}
    assert http.post("/v1/models/half_plus_two:predict", content=b'{"instances": [1.0, 2.0, 5.0]}').content == (
        HALF_PLUS_TWO_ROW
    )


def test_rest_nan_passes_through_as_tf_serving_does(http) -> None:
    answer = http.post("/v1/models/half_plus_two:predict", content=b'{"instances": [NaN, Infinity]}')
    assert answer.status_code == 200
    assert answer.content == b'{\n    "predictions": [NaN, Infinity\n    ]\n}'


def test_non_api_path_is_404(http) -> None:
    answer = http.get("/healthz")
    assert answer.status_code == 404
    assert "error" in answer.json()


# ---- gRPC ------------------------------------------------------------------------------------------


def test_grpc_predict(prediction) -> None:
    request = protos.PredictRequest()
    request.model_spec.name = "half_plus_two"
    from_numpy([[1.0], [2.0], [5.0]], request.inputs["x"])
    request.inputs["x"].CopyFrom(from_numpy(__import__("numpy").array([[1.0], [2.0], [5.0]], "float32")))
    response = prediction.Predict(request, timeout=30)
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 123
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]
    assert to_numpy(response.outputs["y"]).shape == (3, 1)


def test_grpc_predict_version_label_and_output_filter(prediction) -> None:
    request = protos.PredictRequest()
    request.model_spec.name = "two_versions"
    request.model_spec.version_label = "canary"
    request.output_filter.append("y")
    request.inputs["x"].CopyFrom(from_numpy(__import__("numpy").array([[2.0]], "float32")))
    response = prediction.Predict(request, timeout=30)
    assert response.model_spec.version.value == 124
    assert list(response.outputs["y"].float_val) == [3.0]


def test_grpc_classify_regress_multi_inference(prediction) -> None:
    classify = protos.ClassificationRequest()
    classify.model_spec.name = "half_plus_two"
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.append(example(2.0))
    result = prediction.Classify(classify, timeout=30)
    assert result.model_spec.version.value == 123
    assert result.result.classifications[0].classes[0].score == 3.0

    regress = protos.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.extend([example(2.0), example(4.0)])
    assert [r.value for r in prediction.Regress(regress, timeout=30).result.regressions] == [3.0, 4.0]

    multi = protos.MultiInferenceRequest()
    for signature, method in (("classify_x_to_y", "classify"), ("regress_x_to_y", "regress")):
        task = multi.tasks.add()
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    multi.input.example_list.examples.append(example(2.0))
    results = prediction.MultiInference(multi, timeout=30).results
    assert results[0].classification_result.classifications[0].classes[0].score == 3.0
    assert results[1].regression_result.regressions[0].value == 3.0
    assert results[1].model_spec.signature_name == "regress_x_to_y"


def test_grpc_metadata_and_status(prediction, model_service, tfs_testdata: Path) -> None:
    request = protos.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half_plus_two"
    response = prediction.GetModelMetadata(request, timeout=30)
    signature_defs = protos.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_defs)
    assert signature_defs.signature_def["serving_default"].inputs["x"].name == "x:0"
    assert sorted(signature_defs.signature_def) == sorted(
        json.loads((tfs_testdata / "half_plus_two_model_metadata.json").read_text())["metadata"]["signature_def"][
            "signature_def"
        ]
    )
    status_request = protos.GetModelStatusRequest()
    status_request.model_spec.name = "bad"
    status = model_service.GetModelStatus(status_request, timeout=30).model_version_status[0]
    assert (status.version, status.state, status.status.error_code) == (123, 50, 5)


@pytest.mark.parametrize(
    ("name", "signature", "alias", "code", "message"),
    [
        ("nope", "", "x", grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (
            "half_plus_two",
            "nope",
            "x",
            grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.',
        ),
        (
            "half_plus_two",
            "",
            "z",
            grpc.StatusCode.INVALID_ARGUMENT,
            "input tensor alias not found in signature: z. Inputs expected to be in the set {x}.",
        ),
    ],
)
def test_grpc_errors(prediction, name: str, signature: str, alias: str, code, message: str) -> None:
    request = protos.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(from_numpy(__import__("numpy").array([[1.0]], "float32")))
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Predict(request, timeout=30)
    assert caught.value.code() == code
    assert caught.value.details() == message


def test_grpc_wrong_dtype_is_invalid_argument(prediction) -> None:
    request = protos.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(from_numpy(__import__("numpy").array([[1]], "int32")))
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "Expects arg[0] to be float but int32 is provided"


def test_grpc_status_of_unknown_model(model_service) -> None:
    request = protos.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as caught:
        model_service.GetModelStatus(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "Could not find any versions of model nope"


def test_health_and_reflection(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {service.name for service in next(iter(responses)).list_services_response.service}
    assert {"tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"} <= names


def test_prometheus_metrics(http) -> None:
    http.post("/v1/models/half_plus_two:predict", json={"instances": [1.0]})
    text = http.get("/monitoring/prometheus/metrics").text
    assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"}' in text
    assert ":tensorflow:serving:request_latency_bucket{" in text
    assert (
        ':tensorflow:serving:runtime_latency_count{model_name="half_plus_two",API="Predict",runtime="tensorflow"}'
        in text
    )
    assert ':tensorflow:serving:batching:processed_batch_size_count{model_name="half_plus_two"' in text


def test_error_bodies_are_valid_json(http) -> None:
    answer = http.post("/v1/models/half_plus_two:predict", content=b"{}")
    assert orjson.loads(answer.content) == {"error": "Missing 'inputs' or 'instances' key"}


def test_tflite_signature_defs_from_model_metadata(http) -> None:
    answer = http.post("/v1/models/half_plus_two_tflite_sigdef:predict", json={"inputs": {"x": [[1.0], [2.0]]}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"outputs": [[2.5], [3.0]]}
    signature = http.get("/v1/models/half_plus_two_tflite_sigdef/metadata").json()["metadata"]["signature_def"]
    assert signature["signature_def"]["serving_default"]["inputs"]["x"]["name"] == "tflite_input:0"


def test_grpc_broadcast_bomb_is_refused(prediction) -> None:
    request = protos.PredictRequest()
    request.model_spec.name = "half_plus_two"
    tensor = request.inputs["x"]
    tensor.dtype = protos.DataType.values_by_name["DT_FLOAT"].number
    for size in (100000, 100000):
        tensor.tensor_shape.dim.add().size = size
    tensor.float_val.append(1.0)
    with pytest.raises(grpc.RpcError) as caught:
        prediction.Predict(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than the 1073741824 byte limit" in caught.value.details()


def test_grpc_garbage_bytes_are_invalid_argument(channel, prediction) -> None:
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff", timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("Could not parse the request message")
    request = protos.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(from_numpy(__import__("numpy").array([[1.0]], "float32")))
    assert list(prediction.Predict(request, timeout=30).outputs["y"].float_val) == [2.5]


def test_grpc_multi_inference_without_tasks(prediction) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        prediction.MultiInference(protos.MultiInferenceRequest(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "MultiInferenceRequest must contain at least one task"
