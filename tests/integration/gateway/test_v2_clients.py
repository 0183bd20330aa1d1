"""The Open Inference Protocol on the gateway, called by the real clients (tritonclient's HTTP and gRPC,
sync, gevent async and asyncio), in front of the real model server with the quick-trained models.

Every v2 answer is compared with the TF Serving API's answer for the same Fashion-MNIST test images,
through the same gateway: the plain cnn, its int8 TFLite variant, the ensemble SavedModel, the gateway's
fan-out ensemble and a weighted route. API keys are on, as in production.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
import tritonclient.http as triton_http
import tritonclient.http.aio as triton_http_aio
from tritonclient.utils import InferenceServerException

from loadtest import payloads, targets
from serving import protos
from serving.tensors import from_numpy, to_numpy

pytestmark = pytest.mark.slow

KEY = targets.API_KEY
SERVABLES = ["cnn", "cnn_int8", "lstm", "transformer", "ensemble"]
NAMES = ["cnn", "cnn_int8", "ensemble", "vote", "canary"]  # a variant, a SavedModel ensemble, a fan-out, a route
ROUTE = {"canary": {"split": {"cnn": 1, "cnn_int8": 1}}}


def _headers() -> dict[str, str]:
    return {"x-api-key": KEY}  # a fresh dict each call: tritonclient writes its own headers into it


@pytest.fixture(scope="module")
def stack(quick_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, targets.Server]]:
    work = tmp_path_factory.mktemp("v2-stack")
    cache = Path(os.environ.get("TENSORGATE_TEST_CACHE", targets.ROOT / ".pytest_cache" / "tensorgate")) / "variants"
    int8 = targets.int8_model(quick_repo, cache, work / "export-int8.log")
    nowhere = Path("/nonexistent/1/model.onnx")
    repo, _ = targets.work_repo(quick_repo, nowhere, work / "repo", set(SERVABLES), int8)
    model_server = targets.start_modelserver(repo / "models.config", SERVABLES, work, batching=True, timeout=240)
    try:
        gateway = targets.start_gateway(repo, model_server.grpc, SERVABLES, work, timeout=60, extra={"routes": ROUTE})
    except Exception:
        model_server.managed.stop()
        raise
    yield {"modelserver": model_server, "gateway": gateway}
    gateway.managed.stop()
    model_server.managed.stop()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    pixels, _ = payloads.test_images(16)
    return pixels[:6].reshape(6, 28, 28, 1).astype(np.float32)


@pytest.fixture(scope="module")
def tf_serving_answers(stack: dict[str, targets.Server], images: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """What TF Serving's gRPC API (Predict, through the same gateway) answers for each name; the route's
    answer comes from whichever servable it chose, so its classes are compared per servable below."""
    answers = {}
    with grpc.insecure_channel(stack["gateway"].grpc) as channel:
        stub = protos.PREDICTION_SERVICE.stub(channel)
        for name in ["cnn", "cnn_int8", "ensemble", "vote"]:
            request = protos.PredictRequest()
            request.model_spec.name = name
            from_numpy(images, out=request.inputs["image"])
            response = stub.Predict(request, timeout=30, metadata=(("x-api-key", KEY),))
            answers[name] = {key: to_numpy(tensor) for key, tensor in response.outputs.items()}
    return answers


def _expected(answers: dict[str, dict[str, np.ndarray]], name: str, result: dict[str, np.ndarray]) -> dict:
    if name != "canary":
        return answers[name]
    # a route answers from cnn or cnn_int8: the answer must be one of them, whole
    close = [s for s in ("cnn", "cnn_int8") if np.allclose(answers[s]["probabilities"], result["probabilities"])]
    assert close, "the route's answer is neither cnn's nor cnn_int8's"
    return answers[close[0]]


def _check(answers: dict[str, dict[str, np.ndarray]], name: str, result: dict[str, np.ndarray]) -> None:
    expected = _expected(answers, name, result)
    assert sorted(result) == sorted(expected), f"{name}: outputs {sorted(result)}"
    for output, array in expected.items():
        assert result[output].dtype == array.dtype and result[output].shape == array.shape, output
        if array.dtype.kind == "f":
            np.testing.assert_allclose(result[output], array, rtol=1e-5, atol=1e-6, err_msg=f"{name} {output}")
        else:
            np.testing.assert_array_equal(result[output], array, err_msg=f"{name} {output}")


def _outputs(result: Any, names: list[str]) -> dict[str, np.ndarray]:
    return {output: result.as_numpy(output) for output in names}


def _output_names(answers: dict[str, dict[str, np.ndarray]], name: str) -> list[str]:
    return sorted(answers["cnn" if name == "canary" else name])


# Health and metadata --------------------------------------------------------------------------------------


def test_http_client_health_and_metadata(stack: dict[str, targets.Server]) -> None:
    client = triton_http.InferenceServerClient(stack["gateway"].rest.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()  # probes: no key needed
    assert client.get_server_metadata(headers=_headers()) == {
        "name": "tensorgate",
        "version": "0.1.0",
        "extensions": ["binary_tensor_data"],
    }
    assert client.is_model_ready("cnn", headers=_headers())
    assert client.is_model_ready("cnn", "1", headers=_headers())
    assert not client.is_model_ready("cnn", "9", headers=_headers())
    unknown = httpx.get(f"{stack['gateway'].rest}/v2/models/cnn/versions/9/ready", headers=_headers(), timeout=10)
    assert unknown.status_code == 404 and "error" in unknown.json()  # docs/gateway.md: 404 for an unknown version
    cnn = client.get_model_metadata("cnn", headers=_headers())
    assert cnn == {
        "name": "cnn",
        "versions": ["1"],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}],
        "outputs": [
            {"name": "class_id", "datatype": "INT64", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        ],
    }
    assert client.get_model_metadata("cnn_int8", headers=_headers())["platform"] == "tensorflow_tflite"
    vote = client.get_model_metadata("vote", headers=_headers())
    assert vote["platform"] == "ensemble"
    assert {"name": "member_class_ids", "datatype": "INT64", "shape": [-1, 3]} in vote["outputs"]
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("nope", headers=_headers())
    assert raised.value.status() == "404"
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("cnn")  # no key
    assert raised.value.status() == "401"


def test_grpc_client_health_and_metadata(stack: dict[str, targets.Server]) -> None:
    client = triton_grpc.InferenceServerClient(stack["gateway"].grpc)
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata(headers=_headers())
    assert (metadata.name, list(metadata.extensions)) == ("tensorgate", ["binary_tensor_data"])
    assert client.is_model_ready("ensemble", headers=_headers())
    model = client.get_model_metadata("ensemble", "1", headers=_headers(), as_json=True)
    assert model["inputs"] == [{"name": "image", "datatype": "FP32", "shape": ["-1", "28", "28", "1"]}]
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("cnn", headers={"x-api-key": "wrong"})
    assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_config("cnn", headers=_headers())  # Triton's extension: not served
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"
    client.close()


# Inference: the same answers as TF Serving's API --------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("binary", [True, False])
def test_http_client_infers_what_tf_serving_answers(
    stack: dict[str, targets.Server], images: np.ndarray, tf_serving_answers: dict, name: str, binary: bool
) -> None:
    client = triton_http.InferenceServerClient(stack["gateway"].rest.removeprefix("http://"))
    tensor = triton_http.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    names = _output_names(tf_serving_answers, name)
    outputs = [triton_http.InferRequestedOutput(output, binary_data=binary) for output in names]
    result = client.infer(name, [tensor], outputs=outputs, request_id="req-7", headers=_headers())
    assert result.get_response()["id"] == "req-7" and result.get_response()["model_name"] == name
    _check(tf_serving_answers, name, _outputs(result, names))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_http_client_compressed_requests(
    stack: dict[str, targets.Server], images: np.ndarray, tf_serving_answers: dict, algorithm: str
) -> None:
    client = triton_http.InferenceServerClient(stack["gateway"].rest.removeprefix("http://"))
    tensor = triton_http.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = client.infer("cnn", [tensor], headers=_headers(), request_compression_algorithm=algorithm)
    _check(tf_serving_answers, "cnn", _outputs(result, ["class_id", "probabilities"]))


def test_http_client_async_infer(
    stack: dict[str, targets.Server], images: np.ndarray, tf_serving_answers: dict
) -> None:
    client = triton_http.InferenceServerClient(stack["gateway"].rest.removeprefix("http://"), concurrency=4)
    pending = []
    for name in NAMES:
        tensor = triton_http.InferInput("image", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)
        pending.append((name, client.async_infer(name, [tensor], headers=_headers())))  # every output, binary
    for name, request in pending:
        result = request.get_result()
        _check(tf_serving_answers, name, _outputs(result, _output_names(tf_serving_answers, name)))
    client.close()


def test_rest_json_answers_match_tf_serving_rest(
    stack: dict[str, targets.Server], images: np.ndarray, tf_serving_answers: dict
) -> None:
    """v2 JSON against TF Serving's REST JSON for the same images (TF Serving prints 6 significant digits)."""
    gateway = stack["gateway"].rest
    tf = httpx.post(
        f"{gateway}/v1/models/ensemble:predict",
        content=orjson.dumps({"instances": images.tolist()}),
        headers=_headers(),
        timeout=30,
    ).json()["predictions"]
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(images.shape), "data": images.tolist()}]}
    v2 = httpx.post(f"{gateway}/v2/models/ensemble/infer", json=body, headers=_headers(), timeout=30)
    assert v2.status_code == 200 and v2.headers["content-type"] == "application/json"
    outputs = {o["name"]: o for o in v2.json()["outputs"]}
    assert outputs["class_id"]["data"] == [row["class_id"] for row in tf]
    np.testing.assert_allclose(
        np.asarray(outputs["probabilities"]["data"]).reshape(6, 10), [row["probabilities"] for row in tf], rtol=1e-5
    )
    assert v2.headers["x-servable"] == "ensemble" and v2.headers["x-model-version"] == "1"


@pytest.mark.parametrize("name", NAMES)
def test_grpc_client_infers_what_tf_serving_answers(
    stack: dict[str, targets.Server], images: np.ndarray, tf_serving_answers: dict, name: str
) -> None:
    client = triton_grpc.InferenceServerClient(stack["gateway"].grpc)
    tensor = triton_grpc.InferInput("image", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = client.infer(name, [tensor], request_id="g-1", headers=_headers(), client_timeout=30)
    assert result.get_response().id == "g-1"
    _check(tf_serving_answers, name, _outputs(result, _output_names(tf_serving_answers, name)))
    client.close()


def test_asyncio_clients(stack: dict[str, targets.Server], images: np.ndarray, tf_serving_answers: dict) -> None:
    async def run() -> None:
        http_client = triton_http_aio.InferenceServerClient(stack["gateway"].rest.removeprefix("http://"))
        grpc_client = triton_grpc_aio.InferenceServerClient(stack["gateway"].grpc)
        try:
            assert await http_client.is_server_ready() and await grpc_client.is_server_live()
            http_inputs = [triton_http_aio.InferInput("image", list(images.shape), "FP32")]
            http_inputs[0].set_data_from_numpy(images)
            grpc_inputs = [triton_grpc_aio.InferInput("image", list(images.shape), "FP32")]
            grpc_inputs[0].set_data_from_numpy(images)
            calls = [http_client.infer(name, http_inputs, headers=_headers()) for name in NAMES]
            calls += [grpc_client.infer(name, grpc_inputs, headers=_headers()) for name in NAMES]
            results = await asyncio.gather(*calls)
            for name, result in zip(NAMES + NAMES, results, strict=True):
                _check(tf_serving_answers, name, _outputs(result, _output_names(tf_serving_answers, name)))
        finally:
            await http_client.close()
            await grpc_client.close()

    asyncio.run(run())


# Errors in the protocol's format ------------------------------------------------------------------------


def test_client_errors(stack: dict[str, targets.Server], images: np.ndarray) -> None:
    http_client = triton_http.InferenceServerClient(stack["gateway"].rest.removeprefix("http://"))
    grpc_client = triton_grpc.InferenceServerClient(stack["gateway"].grpc)
    wrong_type = images.astype(np.int32)
    cases = [
        ("cnn", "", wrong_type, "INT32", "unexpected datatype INT32 for inference input 'image' of model 'cnn'"),
        ("cnn", "", images.reshape(6, 784), "FP32", "unexpected shape for input 'image' of model 'cnn'"),
        ("nope", "", images, "FP32", "Servable not found"),
        ("cnn", "9", images, "FP32", "Servable not found"),
    ]
    for name, version, array, datatype, message in cases:
        http_input = triton_http.InferInput("image", list(array.shape), datatype)
        http_input.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException) as raised:
            http_client.infer(name, [http_input], model_version=version, headers=_headers())
        assert message in raised.value.message(), raised.value.message()
        assert raised.value.status() in ("400", "404")
        grpc_input = triton_grpc.InferInput("image", list(array.shape), datatype)
        grpc_input.set_data_from_numpy(array)
        with pytest.raises(InferenceServerException) as raised:
            grpc_client.infer(name, [grpc_input], model_version=version, headers=_headers())
        assert message in raised.value.message()
        assert raised.value.status() in ("StatusCode.INVALID_ARGUMENT", "StatusCode.NOT_FOUND")
    http_input = triton_http.InferInput("image", list(images.shape), "FP32")
    http_input.set_data_from_numpy(images)
    with pytest.raises(InferenceServerException) as raised:
        http_client.infer("cnn", [http_input], outputs=[triton_http.InferRequestedOutput("logits")], headers=_headers())
    assert raised.value.status() == "400" and "unexpected inference output 'logits'" in raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        http_client.infer("cnn", [http_input])
    assert raised.value.status() == "401"
    grpc_client.close()


@pytest.mark.parametrize(
    ("header_length", "tail", "message"),
    [
        ("abc", b"", "Inference-Header-Content-Length must be a number of bytes"),
        ("99999", b"", "Inference-Header-Content-Length is 99999, but the body has"),
        (None, b"\0" * 3, "3 bytes of data, but shape [1, 28, 28, 1] of FP32 needs 3136"),
        (None, b"\0" * 4000, "864 bytes of binary data after the last input's binary_data_size"),
    ],
)
def test_malformed_binary_bodies_are_400s(
    stack: dict[str, targets.Server], header_length: str | None, tail: bytes, message: str
) -> None:
    size = len(tail) if len(tail) < 3136 else 3136
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1], "parameters": {"binary_data_size": size}}
            ]
        }
    )
    headers = {**_headers(), "Inference-Header-Content-Length": header_length or str(len(header))}
    response = httpx.post(
        f"{stack['gateway'].rest}/v2/models/cnn/infer", content=header + tail, headers=headers, timeout=10
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message) or message in response.json()["error"]


def _requests(text: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("tensorgate_gateway_requests_total{") and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_and_access_lines_name_the_protocol(stack: dict[str, targets.Server]) -> None:
    text = httpx.get(f"{stack['gateway'].rest}/metrics", timeout=10).text
    assert _requests(text, protocol="v2-http", method="infer", status="200") > 0
    assert _requests(text, protocol="v2-http", method="infer", status="400") > 0
    assert _requests(text, protocol="v2-grpc", method="infer", status="OK") > 0
    assert _requests(text, protocol="v2-grpc", method="infer", servable="vote") > 0
    log = stack["gateway"].managed.log.read_text()
    assert '"protocol":"v2-http","method":"POST","route":"/v2/models/cnn/infer"' in log
    assert '"protocol":"v2-grpc","method":"POST","route":"/inference.GRPCInferenceService/ModelInfer"' in log
