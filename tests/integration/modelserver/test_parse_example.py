"""TFLite models with the ParseExampleV2 custom op load and serve, as in TF Serving.

TF Serving's TFLite session registers the op's kernel (``servables/tensorflow/tflite_session.cc``) and
its test ``tflite_session_test.cc`` (TestBatchParallelismForString, TestSetScheduler) runs
``parse_example_tflite``: input ``input`` holds serialized tf.Examples with float feature ``x`` and
bytes feature ``y``; outputs ``ParseExample/ParseExampleV2`` (float [batch, 1]) and
``ParseExample/ParseExampleV2:1`` (bytes [batch, 1]); a missing feature takes the model's default
(0 and "missing"). The kernel's errors are in ``tensorflow/lite/kernels/parse_example/parse_example.cc``.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from serving import protos
from serving.tensors import from_numpy, to_numpy
from tests.integration.modelserver.conftest import ROOT, RunningServer

pytestmark = pytest.mark.slow

FLOAT_OUT, BYTES_OUT = "ParseExample/ParseExampleV2", "ParseExample/ParseExampleV2:1"


def example(
    x: float | None = None, y: bytes | None = None, x_ints: list[int] | None = None, x_floats: list[float] | None = None
) -> bytes:
    item = protos.Example()
    if x is not None:
        item.features.feature["x"].float_list.value.append(x)
    if x_floats is not None:
        item.features.feature["x"].float_list.value.extend(x_floats)
    if x_ints is not None:
        item.features.feature["x"].int64_list.value.extend(x_ints)
    if y is not None:
        item.features.feature["y"].bytes_list.value.append(y)
    return item.SerializeToString()


@pytest.fixture(scope="module")
def server(launch, tfs_testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    built = tmp_path_factory.mktemp("parse-example") / "chained"
    subprocess.run(
        [sys.executable, "-m", "tests.integration.modelserver.parse_example_model", str(built / "1" / "model.tflite")],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    config = built.parent / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "parse_example" base_path: "{tfs_testdata / "parse_example_tflite"}" '
        'model_platform: "tensorflow" }\n'
        f'  config {{ name: "chained" base_path: "{built}" model_platform: "tflite" }}\n'
        "}\n"
    )
    return launch([f"--model_config_file={config}", "--prefer_tflite_model=true"])


def predict(server: RunningServer, model: str, blobs: list[bytes]) -> dict[str, np.ndarray]:
    request = protos.PredictRequest()
    request.model_spec.name = model
    request.inputs["input"].CopyFrom(from_numpy(np.array(blobs, dtype=object)))
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=30)
    return {name: to_numpy(tensor) for name, tensor in response.outputs.items()}


def test_parse_example_tflite_loads_and_serves_as_tflite_session_test_expects(server: RunningServer) -> None:
    status = httpx.get(f"{server.rest}/v1/models/parse_example", timeout=10).json()["model_version_status"][0]
    assert (status["version"], status["state"]) == ("123", "AVAILABLE")
    values = [0.25, -0.5, 0.125]
    outputs = predict(server, "parse_example", [example(v, b"test string") for v in values] + [example()])
    assert outputs[FLOAT_OUT].dtype == np.float32 and outputs[FLOAT_OUT].shape == (4, 1)
    assert outputs[FLOAT_OUT].reshape(-1).tolist() == [*values, 0.0]
    assert outputs[BYTES_OUT].reshape(-1).tolist() == [b"test string"] * 3 + [b"missing"]


def test_rest_predict_with_b64_examples(server: RunningServer) -> None:
    """Serialized Examples go in as {"b64": ...}; a string output whose alias does not end in _bytes
    comes back as a JSON string (json_tensor.cc)."""
    body = {"instances": [{"b64": base64.b64encode(example(1.5, b"abc")).decode()}]}
    answer = httpx.post(f"{server.rest}/v1/models/parse_example:predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [{FLOAT_OUT: [1.5], BYTES_OUT: ["abc"]}]}


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (
            example(x_ints=[3]),
            "Name: <unknown>, Key: x, Index: 0.  Data types don't match. Data type: int64 but expected type: float",
        ),
        (
            example(x_floats=[1.0, 2.0]),
            "Name: <unknown>, Key: x, Index: 0.  Number of float values != expected.  "
            "Values size:2 but output shape: [1,1]",
        ),
        (b"\xff\xff", "Failed to parse example"),
    ],
)
def test_examples_the_kernel_refuses(server: RunningServer, blob: bytes, message: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        predict(server, "parse_example", [blob])
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert predict(server, "parse_example", [example(1.0)])[FLOAT_OUT].tolist() == [[1.0]]


def test_ops_after_the_parse_run_in_litert(server: RunningServer) -> None:
    outputs = predict(server, "chained", [example(0.25), example(), example(3.0)])
    assert outputs["Identity"].reshape(-1).tolist() == [1.5, 1.0, 7.0]
