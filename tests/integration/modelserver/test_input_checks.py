"""No request reaches a runtime unless it fits the signature, and none takes the model server down.

A real model server with every CPU runtime (the quick cnn as SavedModel, TFLite dynamic / float16 / int8
and ONNX) and TF Serving's half_plus_two (for Classify, Regress and MultiInference), under oneDNN on
(what TensorFlow picks on Intel CPUs) and off (AMD), with and without batching. Each bad request gets
INVALID_ARGUMENT / 400 with its message, and the good request after it answers as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
from google.protobuf import text_format

from serving import protos
from serving.tensors import DT, from_numpy, to_numpy
from tests.integration.modelserver.conftest import RunningServer, start_server

pytestmark = pytest.mark.slow

SERVABLES = ("cnn", "cnn_dynamic", "cnn_fp16", "cnn_int8", "cnn_onnx")
EXPECTS = "[-1,28,28,1]"
SETTINGS = {
    "onednn-on-batching": ("1", True),
    "onednn-off-batching": ("0", True),
    "onednn-on-no-batching": ("1", False),
}
MAX_BATCH = 16
Input = type(protos.ClassificationRequest().input)  # tensorflow.serving.Input


def image(rows: int = 1) -> np.ndarray:
    return (np.arange(rows * 784, dtype=np.float32) * 7 % 256).reshape(rows, 28, 28, 1)


@pytest.fixture(scope="module", params=list(SETTINGS))
def server(
    request: pytest.FixtureRequest, cnn_variants: Path, tfs_testdata: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    onednn, batching = SETTINGS[request.param]
    directory = tmp_path_factory.mktemp(f"input-checks-{request.param}")
    config = text_format.Parse((cnn_variants / "modelserver.config").read_text(), protos.ModelServerConfig())
    config.model_config_list.config.add(
        name="half_plus_two", base_path=str(tfs_testdata / "saved_model_half_plus_two_cpu"), model_platform="tensorflow"
    )
    (directory / "models.config").write_text(text_format.MessageToString(config))
    args = [f"--model_config_file={directory / 'models.config'}"]
    if batching:
        (directory / "batching.config").write_text(
            f"max_batch_size {{ value: {MAX_BATCH} }}\nbatch_timeout_micros {{ value: 1000 }}\n"
            "num_batch_threads { value: 2 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n"
        )
        args += ["--enable_batching", f"--batching_parameters_file={directory / 'batching.config'}"]
    running = start_server(args, directory, env={"TF_ENABLE_ONEDNN_OPTS": onednn})
    try:
        yield running
    finally:
        running.stop()


class Client:
    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.rest, timeout=60)
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.stub = protos.PREDICTION_SERVICE.stub(self.channel)
        self.reference = {name: self.grpc_predict(name, image(2)) for name in SERVABLES}

    def grpc_predict(self, name: str, array: np.ndarray | None = None, tensor: Any = None) -> np.ndarray:
        request = protos.PredictRequest()
        request.model_spec.name = name
        if tensor is not None:
            request.inputs["image"].CopyFrom(tensor)
        else:
            from_numpy(array, out=request.inputs["image"])
        return to_numpy(self.stub.Predict(request, timeout=60).outputs["class_id"])

    def good_after(self, name: str, what: str) -> None:
        """Both fronts still answer the reference for ``name`` after the bad request ``what``."""
        assert self.server.process.poll() is None, f"the model server died after {what}:\n{self.server.log()[-3000:]}"
        np.testing.assert_array_equal(self.grpc_predict(name, image(2)), self.reference[name], err_msg=what)
        answer = self.http.post(f"/v1/models/{name}:predict", content=orjson.dumps({"instances": image(2).tolist()}))
        assert answer.status_code == 200, (what, answer.text)
        assert [p["class_id"] for p in answer.json()["predictions"]] == self.reference[name].tolist(), what

    def close(self) -> None:
        self.http.close()
        self.channel.close()


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[Client]:
    made = Client(server)
    yield made
    made.close()


def shaped(shape: tuple[int, ...], dtype: str = "DT_FLOAT", value: Any = 1.0) -> Any:
    """A TensorProto with a declared shape and one value (broadcast, as tf.make_ndarray does)."""
    tensor = protos.TensorProto(dtype=DT[dtype].number)
    for size in shape:
        tensor.tensor_shape.dim.add().size = size
    field = {"DT_FLOAT": "float_val", "DT_INT32": "int_val", "DT_STRING": "string_val", "DT_BOOL": "bool_val"}[dtype]
    getattr(tensor, field).append(value)
    return tensor


def wrong_shape(shape: tuple[int, ...]) -> str:
    return f"Input image has shape [{','.join(map(str, shape))}] but the signature expects {EXPECTS}"


GRPC_CASES: dict[str, tuple[Any, str]] = {
    # wrong rank
    "rank 2 [1,2] (the request that aborted the server)": (np.array([[1.0, 2.0]], np.float32), wrong_shape((1, 2))),
    "rank 3, no channel": (np.zeros((1, 28, 28), np.float32), wrong_shape((1, 28, 28))),
    "rank 3, no batch": (np.zeros((28, 28, 1), np.float32), wrong_shape((28, 28, 1))),
    "rank 5": (np.zeros((1, 1, 28, 28, 1), np.float32), wrong_shape((1, 1, 28, 28, 1))),
    "rank 1, flat pixels": (np.zeros(784, np.float32), wrong_shape((784,))),
    "rank 0, a scalar": (np.float32(3.0), wrong_shape(())),
    # wrong dimensions
    "27 rows": (np.zeros((1, 27, 28, 1), np.float32), wrong_shape((1, 27, 28, 1))),
    "3 channels": (np.zeros((1, 28, 28, 3), np.float32), wrong_shape((1, 28, 28, 3))),
    "29 columns": (np.zeros((2, 28, 29, 1), np.float32), wrong_shape((2, 28, 29, 1))),
    "a zero-size dimension": (np.zeros((1, 28, 0, 1), np.float32), wrong_shape((1, 28, 0, 1))),
    # empty and huge
    "empty batch": (np.zeros((0, 28, 28, 1), np.float32), "Input image has shape [0,28,28,1]: an empty batch"),
    "declared 10^7 rows, one value": (shaped((10**7, 28, 28, 1)), "larger than the 1073741824 byte limit"),
    "declared 2^40 columns, one value": (shaped((1, 28, 2**40, 1)), "larger than the 1073741824 byte limit"),
    # wrong dtype
    "int32": (np.zeros((1, 28, 28, 1), np.int32), "Expects arg[0] to be float but int32 is provided"),
    "double": (np.zeros((1, 28, 28, 1), np.float64), "Expects arg[0] to be float but double is provided"),
    "bool": (shaped((1, 28, 28, 1), "DT_BOOL", True), "Expects arg[0] to be float but bool is provided"),
    "strings": (shaped((1, 28, 28, 1), "DT_STRING", b"x"), "Expects arg[0] to be float but string is provided"),
    "strings, wrong rank too": (shaped((3,), "DT_STRING", b"x"), "Expects arg[0] to be float but string is provided"),
}

REST_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "the issue's request": ({"instances": [[1.0, 2.0]]}, wrong_shape((1, 2))),
    "rank 3 instances": ({"instances": np.zeros((1, 28, 28)).tolist()}, wrong_shape((1, 28, 28))),
    "rank 2 columnar": ({"inputs": np.zeros((28, 28)).tolist()}, wrong_shape((28, 28))),
    "scalar columnar": ({"inputs": 1.0}, wrong_shape(())),
    "flat pixels": ({"instances": [0.0] * 784}, wrong_shape((784,))),
    "27 rows": ({"instances": np.zeros((1, 27, 28, 1)).tolist()}, wrong_shape((1, 27, 28, 1))),
    "empty columnar": ({"inputs": []}, wrong_shape((0,))),
    "empty instances": ({"instances": []}, ""),
    "strings": ({"instances": [[[["x"]] * 28] * 28]}, "is not of expected type: float"),
    "booleans": ({"instances": [[[[True]] * 28] * 28]}, "is not of expected type: float"),
    "nulls": ({"instances": [[[[None]] * 28] * 28]}, ""),
}


@pytest.mark.parametrize("name", SERVABLES)
@pytest.mark.parametrize("case", list(GRPC_CASES))
def test_grpc_bad_input_is_invalid_argument_and_the_servable_serves_on(client: Client, name: str, case: str) -> None:
    value, message = GRPC_CASES[case]
    with pytest.raises(grpc.RpcError) as caught:
        if isinstance(value, np.ndarray | np.generic):
            client.grpc_predict(name, np.asarray(value))
        else:
            client.grpc_predict(name, tensor=value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert message in caught.value.details()
    client.good_after(name, case)


@pytest.mark.parametrize("name", SERVABLES)
@pytest.mark.parametrize("case", list(REST_CASES))
def test_rest_bad_input_is_400_and_the_servable_keeps_serving(client: Client, name: str, case: str) -> None:
    body, message = REST_CASES[case]
    answer = client.http.post(f"/v1/models/{name}:predict", content=orjson.dumps(body))
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]
    client.good_after(name, case)


@pytest.mark.parametrize("name", SERVABLES)
def test_nan_and_inf_reach_the_model_as_in_tf_serving(client: Client, name: str) -> None:
    array = image(3)
    array[0, 0, 0, 0], array[1, 5, 5, 0], array[2] = np.nan, np.inf, -np.inf
    assert client.grpc_predict(name, array).shape == (3,)
    body = orjson.dumps({"instances": array.tolist()}, option=orjson.OPT_SERIALIZE_NUMPY).replace(b"null", b"NaN")
    assert client.http.post(f"/v1/models/{name}:predict", content=body).status_code == 200
    client.good_after(name, "NaN/Inf")


@pytest.mark.parametrize("name", SERVABLES)
def test_batch_size_limit(client: Client, name: str, server: RunningServer) -> None:
    """With batching: over max_batch_size is refused as TF Serving does. Without: a large request runs in
    slices (inference.MAX_ROWS_PER_CALL rows at a time) and answers as one."""
    batching = "--enable_batching" in server.process.args  # type: ignore[operator]
    rows = MAX_BATCH + 1 if batching else 2100
    array = np.concatenate([image(2)] * (rows // 2) + [image(2)[:1]] * (rows % 2))
    if batching:
        with pytest.raises(grpc.RpcError) as caught:
            client.grpc_predict(name, array)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == f"Task size {rows} is larger than maximum input batch size {MAX_BATCH}"
    else:
        classes = client.grpc_predict(name, array)
        assert classes.tolist() == np.resize(client.reference[name], rows).tolist()
    client.good_after(name, f"{rows} rows")


def examples(*values: float) -> Any:
    request_input = Input()
    for value in values:
        request_input.example_list.examples.add().features.feature["x"].float_list.value.append(value)
    return request_input


def classify(client: Client, name: str, signature: str, request_input: Any) -> Any:
    request = protos.ClassificationRequest(input=request_input)
    request.model_spec.name, request.model_spec.signature_name = name, signature
    return client.stub.Classify(request, timeout=60)


def regress(client: Client, name: str, signature: str, request_input: Any) -> Any:
    request = protos.RegressionRequest(input=request_input)
    request.model_spec.name, request.model_spec.signature_name = name, signature
    return client.stub.Regress(request, timeout=60)


def multi(client: Client, name: str, signature: str, request_input: Any) -> Any:
    request = protos.MultiInferenceRequest(input=request_input)
    task = request.tasks.add(method_name="tensorflow/serving/regress")
    task.model_spec.name, task.model_spec.signature_name = name, signature
    return client.stub.MultiInference(request, timeout=60)


CALLS: dict[str, Callable[..., Any]] = {"Classify": classify, "Regress": regress, "MultiInference": multi}
EXAMPLE_CASES = [
    ("no examples", "half_plus_two", "regress_x_to_y", Input(), "Input is empty."),
    ("float signature", "half_plus_two", "regress_x2_to_y3", examples(1.0), "Expected input Tensor of type string"),
    ("image model", "cnn", "serving_default", examples(1.0), "Expected input Tensor of type string"),
    ("TFLite image model", "cnn_dynamic", "serving_default", examples(1.0), "Expected input Tensor of type string"),
]


@pytest.mark.parametrize("method", list(CALLS))
@pytest.mark.parametrize(("case", "name", "signature", "request_input", "message"), EXAMPLE_CASES)
def test_classify_regress_multi_inference_check_their_input_too(
    client: Client, method: str, case: str, name: str, signature: str, request_input: Any, message: str
) -> None:
    call = CALLS[method]
    if method == "Classify" and signature.startswith("regress"):
        signature = "classify_x_to_y" if case == "no examples" else signature
    with pytest.raises(grpc.RpcError) as caught:
        call(client, name, signature, request_input)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert message in caught.value.details()
    good = regress(client, "half_plus_two", "regress_x_to_y", examples(2.0, 4.0))
    assert [r.value for r in good.result.regressions] == [3.0, 4.0]
    assert classify(client, "half_plus_two", "classify_x_to_y", examples(2.0)).result.classifications[0].classes[
        0
    ].score == pytest.approx(3.0)
    if name.startswith("cnn"):
        client.good_after(name, f"{method} {case}")


def test_nothing_aborted_or_broke_a_runtime(client: Client, server: RunningServer) -> None:
    """Runs last in the module: the server is the one process that took every case above."""
    for name in SERVABLES:
        client.good_after(name, "the whole matrix")
    log = server.log()
    assert "Check failed" not in log and "Fatal" not in log, log[-3000:]
    assert "set aside in this process" not in log, "a runtime failed on input that passed the checks"
