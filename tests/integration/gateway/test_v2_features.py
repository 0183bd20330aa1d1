"""What the gateway does for TF Serving requests, done for v2 requests too: coalescing across protocols,
deadlines, shadows, ensembles, limits, keys, labels; and malformed requests answered at once with 400s.

Against the fake upstream (tests/integration/gateway/fake_upstream.py), whose delays and call log make
batching and deadlines observable.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pytest

from serving import protos
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow

KEY = "v2-key"
AUTH = {"x-api-key": KEY}


@pytest.fixture(scope="module")
def upstream(tmp_module: Path) -> Iterator[FakeUpstream]:
    fake = FakeUpstream(tmp_module, "cnn,cnn_bad,lstm,transformer,slow", shift={"cnn_bad": 1}, delay={"slow": 1.0})
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(tmp_module: Path, upstream: FakeUpstream) -> Iterator[Gateway]:
    config = {
        "repo": None,
        "upstreams": {"default": {"targets": [upstream.target]}},
        "servables": dict.fromkeys(["cnn", "cnn_bad", "lstm", "transformer", "slow"], "default"),
        "routes": {"shadowed": {"split": {"cnn": 1}, "shadow": "cnn_bad"}},
        "ensembles": {"vote": {"members": ["cnn", "lstm", "transformer"], "voting": "soft"}},
        "limits": {"max_batch_size": 4, "max_body_bytes": 64 * 1024},
        "timeouts": {"request_s": 5.0, "body_read_s": 1.0},
        "api_keys": [KEY],
    }
    server = Gateway(tmp_module, config)
    server.wait_ready()
    yield server
    server.stop()


def _images(value: float, rows: int = 1) -> np.ndarray:
    return np.full((rows, 28, 28, 1), value, np.float32)


def _binary(images: np.ndarray, **parameters: Any) -> tuple[bytes, dict[str, str]]:
    data = images.tobytes()
    tensor = {"name": "image", "datatype": "FP32", "shape": list(images.shape)}
    header = orjson.dumps(
        {"inputs": [{**tensor, "parameters": {"binary_data_size": len(data)}}], "parameters": parameters}
    )
    headers = {**AUTH, "Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    return header + data, headers


def _classes(response: httpx.Response) -> list[int]:
    length = response.headers.get("inference-header-content-length")
    split = int(length) if length else len(response.content)
    document = orjson.loads(response.content[:split])
    offset = split
    for output in document["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if output["name"] == "class_id":
            if size is None:
                return list(output["data"])
            return np.frombuffer(response.content[offset : offset + size], "<i8").tolist()
        offset += size or 0
    raise AssertionError(f"no class_id in {document}")


def _infer_message(name: str, images: np.ndarray) -> Any:
    request = protos.ModelInferRequest(model_name=name)
    request.inputs.add(name="image", datatype="FP32", shape=list(images.shape))
    request.raw_input_contents.append(images.tobytes())
    return request


def _grpc_classes(response: Any) -> list[int]:
    index = [tensor.name for tensor in response.outputs].index("class_id")
    return np.frombuffer(response.raw_output_contents[index], "<i8").tolist()


def test_v2_rest_v2_grpc_and_tf_serving_requests_share_one_upstream_call(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    """A leader in flight for 1 s; a v2 binary, a v2 JSON, a v2 gRPC and a TF Serving REST request for
    the same servable wait behind it and go up together: one prediction path for every protocol."""
    answers: dict[str, object] = {}
    client = httpx.Client(base_url=gateway.url, timeout=30)
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}")
    infer = protos.INFERENCE_SERVICE.stub(channel).ModelInfer

    def leader() -> None:
        body, headers = _binary(_images(0.0))
        answers["leader"] = _classes(
            client.post("/v2/models/slow/infer", content=body, headers={**headers, "x-request-id": "lead"})
        )

    def v2_binary() -> None:
        body, headers = _binary(_images(30.0, 2))
        response = client.post("/v2/models/slow/infer", content=body, headers={**headers, "x-request-id": "bin"})
        answers["bin"] = _classes(response)

    def v2_json() -> None:
        tensor = {"name": "image", "datatype": "FP32", "shape": [1, 28, 28, 1], "data": [60.0] * 784}
        response = client.post(
            "/v2/models/slow/infer", json={"inputs": [tensor]}, headers={**AUTH, "x-request-id": "json"}
        )
        answers["json"] = _classes(response)

    def v2_grpc() -> None:
        response = infer(_infer_message("slow", _images(90.0)), metadata=(("x-api-key", KEY), ("x-request-id", "grpc")))
        answers["grpc"] = _grpc_classes(response)

    def tf_serving() -> None:
        response = client.post(
            "/v1/models/slow:predict", json=image_instances(120.0), headers={**AUTH, "x-request-id": "tfs"}
        )
        answers["tfs"] = [row["class_id"] for row in response.json()["predictions"]]

    first = threading.Thread(target=leader)
    first.start()
    time.sleep(0.3)
    followers = [threading.Thread(target=f) for f in (v2_binary, v2_json, v2_grpc, tf_serving)]
    for thread in followers:
        thread.start()
    for thread in [first, *followers]:
        thread.join()
    client.close()
    channel.close()
    assert answers == {"leader": [0], "bin": [1, 1], "json": [2], "grpc": [3], "tfs": [4]}  # each its own rows
    calls = [line.split()[2] for line in upstream.call_lines() if line.startswith("Predict slow")]
    assert calls[0] == "lead"
    assert sorted(id_ for call in calls[1:] for id_ in call.split(",")) == ["bin", "grpc", "json", "tfs"]
    assert len(calls) <= 3  # four followers in one merged call (two at most)


def test_deadlines_the_timeout_parameter_and_the_grpc_deadline(gateway: Gateway) -> None:
    body, headers = _binary(_images(10.0), timeout=300_000)  # Triton's request timeout, microseconds
    started = time.monotonic()
    response = gateway.client.post("/v2/models/slow/infer", content=body, headers=headers)
    assert response.status_code == 504 and response.json() == {"error": "Deadline exceeded"}
    assert time.monotonic() - started < 0.9  # the upstream takes 1 s
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            protos.INFERENCE_SERVICE.stub(channel).ModelInfer(
                _infer_message("slow", _images(1.0)), timeout=0.3, metadata=(("x-api-key", KEY),)
            )
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 0.9


def test_a_shadowed_route_answers_from_the_primary_and_measures_the_candidate(gateway: Gateway) -> None:
    before = gateway.metric("tensorgate_gateway_shadow_rows_total", route="shadowed")
    body, headers = _binary(_images(100.0, 3))
    response = gateway.client.post("/v2/models/shadowed/infer", content=body, headers=headers)
    assert response.status_code == 200 and _classes(response) == [3, 3, 3]  # cnn's, not cnn_bad's 4
    assert response.headers["x-servable"] == "cnn"
    assert response.json()["model_name"] == "shadowed"
    deadline = time.monotonic() + 5
    while gateway.metric("tensorgate_gateway_shadow_rows_total", route="shadowed") < before + 3:
        assert time.monotonic() < deadline, "the shadow call was not measured"
        time.sleep(0.05)
    assert gateway.metric("tensorgate_gateway_shadow_agreements_total", route="shadowed") == 0


def test_the_fan_out_ensemble_and_a_version_label(gateway: Gateway) -> None:
    body, headers = _binary(_images(200.0, 2), binary_data_output=False)
    response = gateway.client.post("/v2/models/vote/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["member_class_ids"] == {
        "name": "member_class_ids",
        "datatype": "INT64",
        "shape": [2, 3],
        "data": [7] * 6,
    }
    labelled = gateway.client.post("/v2/models/cnn/versions/stable/infer", content=body, headers=headers)
    assert labelled.status_code == 200 and labelled.json()["model_version"] == "1"
    missing = gateway.client.post("/v2/models/cnn/versions/canary/infer", content=body, headers=headers)
    assert missing.status_code == 404 and "Specific(cnn, canary)" in missing.json()["error"]


def test_limits_apply(gateway: Gateway) -> None:
    body, headers = _binary(_images(1.0, 5))
    response = gateway.client.post("/v2/models/cnn/infer", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "Input 'image' has batch size 5, over the limit of 4"}
    too_big = b"{" + b" " * (64 * 1024)
    response = gateway.client.post("/v2/models/cnn/infer", content=too_big, headers=AUTH)
    assert response.status_code == 413
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as raised:
            protos.INFERENCE_SERVICE.stub(channel).ModelInfer(
                _infer_message("cnn", _images(1.0, 5)), timeout=5, metadata=(("x-api-key", KEY),)
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details() == "Input 'image' has batch size 5, over the limit of 4"


def test_keys_bearer_and_public_probes(gateway: Gateway) -> None:
    body, headers = _binary(_images(1.0))
    del headers["x-api-key"]
    assert gateway.client.post("/v2/models/cnn/infer", content=body, headers=headers).status_code == 401
    bearer = {**headers, "Authorization": f"Bearer {KEY}"}
    assert gateway.client.post("/v2/models/cnn/infer", content=body, headers=bearer).status_code == 200
    assert gateway.client.get("/v2/models/cnn").status_code == 401
    assert gateway.client.get("/v2").status_code == 401
    assert gateway.client.get("/v2/health/live").json() == {"live": True}
    assert gateway.client.get("/v2/health/ready").json() == {"ready": True}
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        stub = protos.INFERENCE_SERVICE.stub(channel)
        assert stub.ServerLive(protos.ServerLiveRequest(), timeout=5).live
        assert stub.ServerReady(protos.ServerReadyRequest(), timeout=5).ready
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelReady(protos.ModelReadyRequest(name="cnn"), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as raised:
            stub.RepositoryIndex(protos.message_class("inference.RepositoryIndexRequest")(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED  # Triton's extensions: the key first
        with pytest.raises(grpc.RpcError) as raised:
            stub.RepositoryIndex(
                protos.message_class("inference.RepositoryIndexRequest")(), timeout=5, metadata=(("x-api-key", KEY),)
            )
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_bytes_that_are_not_a_model_infer_request_are_invalid_argument(gateway: Gateway) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as raised:
            call(b"\xff\xff\xff", timeout=5, metadata=(("x-api-key", KEY),))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _raw_http(gateway: Gateway, request: bytes, wait: float = 5.0) -> tuple[bytes, float]:
    """Send bytes as they are; (the whole answer, seconds until the connection closed or 5 s passed)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=wait) as sock:
        sock.sendall(request)
        sock.settimeout(wait)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except TimeoutError:
            pass
    return answer, time.monotonic() - started


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


@pytest.mark.parametrize(
    ("header_length", "declared", "sent", "message"),
    [
        (b"12abc", 8, 8, b"Inference-Header-Content-Length must be a number of bytes, got '12abc'"),
        (b"", 8, 8, b"Inference-Header-Content-Length must be a number of bytes, got ''"),
        (b"100000", 8, 8, b"Inference-Header-Content-Length is 100000, but the body has"),
        (None, 8, 108, b"100 bytes of binary data after the last input's binary_data_size"),
        (None, 16, 10, b"binary_data_size is 16, but only 10 bytes of binary data remain after the JSON header"),
        (None, 4, 4, b"4 bytes of data, but shape [1, 2] of FP32 needs 8"),
    ],
)
def test_malformed_headers_and_sizes_are_400_at_once(
    gateway: Gateway, header_length: bytes | None, declared: int, sent: int, message: bytes
) -> None:
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": declared}}
    header = orjson.dumps({"inputs": [tensor]})
    body = header + b"\x00" * sent
    length = header_length if header_length is not None else str(len(header)).encode()
    request = b"".join(
        [
            b"POST /v2/models/cnn/infer HTTP/1.1\r\nHost: x\r\nx-api-key: ",
            KEY.encode(),
            b"\r\nInference-Header-Content-Length: ",
            length,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n\r\n",
            body,
        ]
    )
    answer, seconds = _raw_http(gateway, request)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert message in answer
    assert seconds < 1.0


def test_a_body_shorter_than_its_length_is_408_after_body_read_s_not_a_hang(gateway: Gateway) -> None:
    request = (
        b"POST /v2/models/cnn/infer HTTP/1.1\r\nHost: x\r\nx-api-key: "
        + KEY.encode()
        + b"\r\nInference-Header-Content-Length: 10\r\nContent-Length: 5000\r\n\r\n"
        + b"{" * 100
    )
    answer, seconds = _raw_http(gateway, request)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:300]
    assert 0.9 < seconds < 3.0  # body_read_s is 1 s


def test_a_compressed_body_is_inflated_within_the_body_limit(gateway: Gateway) -> None:
    body, headers = _binary(_images(100.0), binary_data_output=False)
    answer = gateway.client.post(
        "/v2/models/cnn/infer", content=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"}
    )
    assert answer.status_code == 200 and _classes(answer) == [3]
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))  # 8 KiB that inflate to 8 MiB, over the 64 KiB limit
    refused = gateway.client.post("/v2/models/cnn/infer", content=bomb, headers={**AUTH, "Content-Encoding": "gzip"})
    assert refused.status_code == 413
    assert refused.json() == {"error": "Request body is over the limit of 65536 bytes once decompressed"}
