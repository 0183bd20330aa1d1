"""TF Serving's own model-server integration tests, run against this server.

Each test here is one test of ``tensorflow_serving/model_servers/tensorflow_model_server_test.py``
(with ``test_util/tensorflow_model_server_test_base.py``, which starts the servers), same name, same
models from TF Serving's test data, same flags, same requests and the same assertions; where a test
differs, its docstring says how and why. docs/modelserver.md lists them all with their status,
including the ones not run here (the profiler service, the tf_text model).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest

from serving import protos
from tests.integration.modelserver.conftest import ROOT, RunningServer

pytestmark = pytest.mark.slow

RPC_TIMEOUT = 20.0
DT_FLOAT = protos.DataType.values_by_name["DT_FLOAT"].number


def run_server(launch, tmp: Path, *args: str) -> RunningServer:
    """RunServer: every server gets --rest_api_timeout_in_ms=5000 and a gRPC UNIX socket."""
    return launch(["--rest_api_timeout_in_ms=5000", f"--grpc_socket_path={tmp / 'tf-serving.sock'}", *args])


def single(launch, tmp: Path, path: Path, *args: str) -> RunningServer:
    return run_server(launch, tmp, "--model_name=default", f"--model_base_path={path}", *args)


def verify_predict(
    address: str,
    expected_output: float,
    expected_version: int,
    model_name: str = "default",
    specify_output: bool = True,
    batch_input: bool = False,
    signature_name: str = "serving_default",
    input_name: str = "x",
    output_name: str = "y",
) -> None:
    """VerifyPredictRequest: x = [2.0] as DT_FLOAT, one float back, model_spec echoed."""
    request = protos.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    tensor = request.inputs[input_name]
    tensor.dtype = DT_FLOAT
    tensor.float_val.append(2.0)
    tensor.tensor_shape.dim.add().size = 1
    if batch_input:
        tensor.tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append(output_name)
    with grpc.insecure_channel(address) as channel:
        result = protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=RPC_TIMEOUT)
    assert output_name in result.outputs
    assert result.outputs[output_name].dtype == DT_FLOAT
    assert list(result.outputs[output_name].float_val) == [expected_output]
    verify_model_spec(result.model_spec, model_name, signature_name, expected_version)


def verify_model_spec(spec, name: str, signature_name: str, version: int) -> None:
    assert (spec.name, spec.signature_name, spec.version.value) == (name, signature_name, version)


def example_input(request) -> None:
    request.input.example_list.examples.add().features.feature["x"].float_list.value.extend([2.0])


# ---- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tf-serving-suite")


@pytest.fixture(scope="module")
def default_server(launch, tmp: Path, tfs_testdata: Path) -> RunningServer:
    """RunServer('default', saved_model_half_plus_two_cpu); with the monitoring config that
    testPrometheusEndpoint adds (one server serves both)."""
    return single(
        launch,
        tmp / "default",
        tfs_testdata / "saved_model_half_plus_two_cpu",
        f"--monitoring_config_file={tfs_testdata / 'monitoring_config.txt'}",
    )


@pytest.fixture(scope="module")
def tf2_server(launch, tmp: Path, tfs_testdata: Path) -> RunningServer:
    """The TF2 half_plus_two (testClassifyTf2 and friends), with batching_config.txt as the batching
    test of the older suite used (testPredictBatching)."""
    return single(
        launch,
        tmp / "tf2",
        tfs_testdata / "saved_model_half_plus_two_tf2_cpu",
        "--enable_batching",
        f"--batching_parameters_file={tfs_testdata / 'batching_config.txt'}",
    )


@pytest.fixture(scope="module", autouse=True)
def socket_dirs(tmp: Path) -> None:
    for name in ("default", "tf2", "config", "reload", "noreload", "channel", "tflite", "sigdef", "saved"):
        (tmp / name).mkdir()


# ---- gRPC on the TF1 half_plus_two ------------------------------------------------------------------


def test_wait_for_server_ready(default_server: RunningServer) -> None:
    """WaitForServerReady: an empty Predict to a missing model fails with 'Servable' in its details."""
    request = protos.PredictRequest()
    request.model_spec.name = "intentionally_missing_model"
    with grpc.insecure_channel(default_server.grpc_target) as channel, pytest.raises(grpc.RpcError) as caught:
        protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=RPC_TIMEOUT)
    assert "Servable" in caught.value.details()


def test_get_model_status(default_server: RunningServer) -> None:
    """testGetModelStatus."""
    request = protos.GetModelStatusRequest()
    request.model_spec.name = "default"
    with grpc.insecure_channel(default_server.grpc_target) as channel:
        result = protos.MODEL_SERVICE.stub(channel).GetModelStatus(request, timeout=RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0


def test_get_model_metadata(default_server: RunningServer) -> None:
    """testGetModelMetadata."""
    request = protos.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    with grpc.insecure_channel(default_server.grpc_target) as channel:
        result = protos.PREDICTION_SERVICE.stub(channel).GetModelMetadata(request, timeout=RPC_TIMEOUT)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == 123
    assert list(result.metadata) == ["signature_def"]


def _classify(address: str) -> None:
    request = protos.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    example_input(request)
    with grpc.insecure_channel(address) as channel:
        result = protos.PREDICTION_SERVICE.stub(channel).Classify(request, timeout=RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    verify_model_spec(result.model_spec, "default", "classify_x_to_y", 123)


def _regress(address: str) -> None:
    request = protos.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    example_input(request)
    with grpc.insecure_channel(address) as channel:
        result = protos.PREDICTION_SERVICE.stub(channel).Regress(request, timeout=RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    verify_model_spec(result.model_spec, "default", "regress_x_to_y", 123)


def _multi_inference(address: str) -> None:
    request = protos.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = f"tensorflow/serving/{method}"
    example_input(request)
    with grpc.insecure_channel(address) as channel:
        result = protos.PREDICTION_SERVICE.stub(channel).MultiInference(request, timeout=RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for index in range(2):
        verify_model_spec(
            result.results[index].model_spec, "default", request.tasks[index].model_spec.signature_name, 123
        )


def test_classify(default_server: RunningServer) -> None:
    """testClassify (TF1 model)."""
    _classify(default_server.grpc_target)


def test_regress(default_server: RunningServer) -> None:
    """testRegress."""
    _regress(default_server.grpc_target)


def test_multi_inference(default_server: RunningServer) -> None:
    """testMultiInference."""
    _multi_inference(default_server.grpc_target)


def test_predict_saved_model(default_server: RunningServer) -> None:
    """testPredictSavedModel (_TestPredict: with and without output_filter)."""
    verify_predict(default_server.grpc_target, 3.0, 123)
    verify_predict(default_server.grpc_target, 3.0, 123, specify_output=False)


def test_predict_uds(default_server: RunningServer, tmp: Path) -> None:
    """testPredictUDS: the same server over --grpc_socket_path."""
    verify_predict(f"unix:{tmp / 'default' / 'tf-serving.sock'}", 3.0, 123, specify_output=False)


# ---- the TF2 half_plus_two, batching on ---------------------------------------------------------------


def test_classify_tf2(tf2_server: RunningServer) -> None:
    """testClassifyTf2."""
    _classify(tf2_server.grpc_target)


def test_regress_tf2(tf2_server: RunningServer) -> None:
    """testRegressTf2."""
    _regress(tf2_server.grpc_target)


def test_multi_inference_tf2(tf2_server: RunningServer) -> None:
    """testMultiInferenceTf2."""
    _multi_inference(tf2_server.grpc_target)


def test_predict_batching(tf2_server: RunningServer) -> None:
    """testPredictBatching (older suite, on a SessionBundle TF Serving no longer loads): _TestPredict
    with --enable_batching --batching_parameters_file=batching_config.txt."""
    verify_predict(tf2_server.grpc_target, 3.0, 123)
    verify_predict(tf2_server.grpc_target, 3.0, 123, specify_output=False)


# ---- REST ---------------------------------------------------------------------------------------------


def call_rest(url: str, request: dict | None) -> dict:
    """CallREST: POST the JSON when there is a body, else GET."""
    if request is None:
        answer = httpx.get(url, timeout=30)
    else:
        answer = httpx.post(url, content=json.dumps(request).encode(), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_classify_rest(default_server: RunningServer) -> None:
    """testClassifyREST."""
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(f"{default_server.rest}/v1/models/default:classify", body) == {"results": [[["", 3.0]]]}


def test_regress_rest(default_server: RunningServer) -> None:
    """testRegressREST."""
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(f"{default_server.rest}/v1/models/default:regress", body) == {"results": [3.0]}


def test_predict_rest(default_server: RunningServer) -> None:
    """testPredictREST."""
    body = {"instances": [2.0, 3.0, 4.0]}
    assert call_rest(f"{default_server.rest}/v1/models/default:predict", body) == {"predictions": [3.0, 3.5, 4.0]}


def test_predict_columnar_rest(default_server: RunningServer) -> None:
    """testPredictColumnarREST."""
    body = {"inputs": [2.0, 3.0, 4.0]}
    assert call_rest(f"{default_server.rest}/v1/models/default:predict", body) == {"outputs": [3.0, 3.5, 4.0]}


def test_get_status_rest(default_server: RunningServer) -> None:
    """testGetStatusREST."""
    assert call_rest(f"{default_server.rest}/v1/models/default", None) == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def sorted_object(value):
    """SortedObject (tensorflow_model_server_test_base.py)."""
    if isinstance(value, dict):
        return sorted((key, sorted_object(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return sorted(sorted_object(item) for item in value)
    return value


def test_get_model_metadata_rest(default_server: RunningServer, tfs_testdata: Path) -> None:
    """testGetModelMetadataREST: equal to half_plus_two_model_metadata.json, compared sorted."""
    expected = json.loads((tfs_testdata / "half_plus_two_model_metadata.json").read_text())
    answer = call_rest(f"{default_server.rest}/v1/models/default/metadata", None)
    assert sorted_object(answer) == sorted_object(expected)


def test_prometheus_endpoint(default_server: RunningServer) -> None:
    """testPrometheusEndpoint: the monitoring config's path answers with metric type information."""
    answer = httpx.get(f"{default_server.rest}/monitoring/prometheus/metrics", timeout=30)
    assert answer.status_code == 200
    assert "# TYPE" in answer.text


# ---- model config files -----------------------------------------------------------------------------


def good_config(tfs_testdata: Path, directory: Path) -> Path:
    """__BuildModelConfigFile: good_model_config.txt with its two placeholders filled in."""
    text = (tfs_testdata / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", str(tfs_testdata / "saved_model_half_plus_two_cpu"))
    text = text.replace("${TEST_HALF_PLUS_THREE_DIR}", str(tfs_testdata / "saved_model_half_plus_three"))
    path = directory / "good_model_config.conf"
    path.write_text(text)
    return path


def test_good_model_config(launch, tmp: Path, tfs_testdata: Path) -> None:
    """testGoodModelConfig."""
    server = run_server(launch, tmp / "config", f"--model_config_file={good_config(tfs_testdata, tmp / 'config')}")
    for name, output in (("half_plus_two", 3.0), ("half_plus_three", 4.0)):
        verify_predict(server.grpc_target, output, 123, model_name=name)
        verify_predict(server.grpc_target, output, 123, model_name=name, specify_output=False)


def test_bad_model_config(tfs_testdata: Path) -> None:
    """testBadModelConfig: stderr names the parse error of bad_model_config.txt."""
    result = subprocess.run(
        [sys.executable, "-m", "serving.modelserver", f"--model_config_file={tfs_testdata / 'bad_model_config.txt'}"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert b"Error parsing text-format tensorflow.serving.ModelServerConfig" in result.stderr


BASE_CONFIG = 'model_config_list: {{ config: {{ name: "{name}", base_path: "{path}", model_platform: "tensorflow" }} }}'


def _reload(launch, directory: Path, tfs_testdata: Path, poll: int) -> tuple[RunningServer, Path]:
    config = directory / "model_config.txt"
    config.write_text(BASE_CONFIG.format(name="half_plus_two", path=tfs_testdata / "saved_model_half_plus_two_cpu"))
    server = run_server(
        launch, directory, f"--model_config_file={config}", f"--model_config_file_poll_wait_seconds={poll}"
    )
    verify_predict(server.grpc_target, 3.0, 123, model_name="half_plus_two", specify_output=False)
    config.write_text(BASE_CONFIG.format(name="half_plus_three", path=tfs_testdata / "saved_model_half_plus_three"))
    return server, config


def test_model_config_reload(launch, tmp: Path, tfs_testdata: Path) -> None:
    """testModelConfigReload: polled every second, the rewritten config is served. TF Serving's test
    waits poll + 1 s and then asks; this one asks until 30 s have passed (loading takes time here)."""
    server, _ = _reload(launch, tmp / "reload", tfs_testdata, poll=1)
    deadline = time.monotonic() + 30
    while True:
        try:
            verify_predict(server.grpc_target, 4.0, 123, model_name="half_plus_three", specify_output=False)
            break
        except grpc.RpcError:
            assert time.monotonic() < deadline
            time.sleep(0.5)


def test_model_config_reload_with_zero_poll_period(launch, tmp: Path, tfs_testdata: Path) -> None:
    """testModelConfigReloadWithZeroPollPeriod: not polled, the old config keeps serving."""
    server, _ = _reload(launch, tmp / "noreload", tfs_testdata, poll=0)
    time.sleep(2)
    verify_predict(server.grpc_target, 3.0, 123, model_name="half_plus_two", specify_output=False)
    with pytest.raises(grpc.RpcError):
        verify_predict(server.grpc_target, 4.0, 123, model_name="half_plus_three", specify_output=False)


def test_good_grpc_channel_args(launch, tmp: Path, tfs_testdata: Path) -> None:
    """testGoodGrpcChannelArgs."""
    server = single(
        launch,
        tmp / "channel",
        tfs_testdata / "saved_model_half_plus_two_cpu",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
    )
    verify_predict(server.grpc_target, 3.0, 123, specify_output=False)


# ---- TensorFlow Lite ---------------------------------------------------------------------------------


def test_predict_on_tflite(launch, tmp: Path, tfs_testdata: Path) -> None:
    """testPredictOnTfLite: RunServer(model_type='tflite') adds --prefer_tflite_model=true."""
    server = single(
        launch, tmp / "tflite", tfs_testdata / "saved_model_half_plus_two_tflite", "--prefer_tflite_model=true"
    )
    verify_predict(server.grpc_target, 3.0, 123, specify_output=False)


def test_predict_with_signature_def_on_tflite(launch, tmp: Path, tfs_testdata: Path) -> None:
    """testPredictWithSignatureDefOnTfLite."""
    server = single(
        launch,
        tmp / "sigdef",
        tfs_testdata / "saved_model_half_plus_two_tflite_with_sigdef",
        "--prefer_tflite_model=true",
    )
    verify_predict(server.grpc_target, 3.0, 123, specify_output=False)


# ---- SavedModels written by tf.saved_model.save ----------------------------------------------------


@pytest.fixture(scope="module")
def saved_server(launch, tmp: Path) -> RunningServer:
    """The four models the tests below write, served from one config (TF Serving starts one server per
    test with --model_name=default; the names here tell them apart)."""
    models = tmp / "saved" / "models"
    subprocess.run(
        [sys.executable, "-m", "tests.integration.modelserver.tf_serving_suite_models", str(models)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    config = protos.ModelServerConfig()
    for name in ("tf_saved_model_save", "multiple_signatures", "keras_sequential", "keras_distributed"):
        config.model_config_list.config.add(name=name, base_path=str(models / name), model_platform="tensorflow")
    path = tmp / "saved" / "models.config"
    from google.protobuf import text_format

    path.write_text(text_format.MessageToString(config))
    return run_server(launch, tmp / "saved", f"--model_config_file={path}")


def test_tf_saved_model_save(saved_server: RunningServer) -> None:
    """test_tf_saved_model_save: 3 * 2 * 2.0."""
    verify_predict(saved_server.grpc_target, 12.0, 123, model_name="tf_saved_model_save", specify_output=False)


def test_tf_saved_model_save_multiple_signatures(saved_server: RunningServer) -> None:
    """test_tf_saved_model_save_multiple_signatures."""
    address = saved_server.grpc_target
    verify_predict(address, 2.0, 123, model_name="multiple_signatures", signature_name="custom_signature_key")
    verify_predict(address, 1.0, 123, model_name="multiple_signatures")


@pytest.mark.parametrize("model", ["keras_sequential", "keras_distributed"])
def test_sequential_keras_saved_model_save(saved_server: RunningServer, model: str) -> None:
    """test_sequential_keras_saved_model_save and test_distrat_sequential_keras_saved_model_save:
    x of shape [1, 1]; Keras 3 names the signature's tensors inputs / output_0 (Keras 2: x / y)."""
    verify_predict(
        saved_server.grpc_target,
        2.0,
        123,
        model_name=model,
        batch_input=True,
        specify_output=False,
        input_name="inputs",
        output_name="output_0",
    )
