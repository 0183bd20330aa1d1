"""Limits (413, batch, image size, 429 per upstream), deadlines, and graceful shutdown."""

from __future__ import annotations

import io
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image

from serving import protos
from serving.tensors import from_numpy
from serving.tfserving.encode import error_body
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(tmp_module: Path) -> Iterator[Gateway]:
    upstream = FakeUpstream(tmp_module, "cnn,slow", delay={"slow": 1.0})
    config = {
        "repo": None,
        "servables": {"cnn": "default", "slow": "slow_upstream"},
        "upstreams": {
            "default": {"targets": [upstream.target]},
            "slow_upstream": {"targets": [upstream.target], "max_concurrency": 1, "max_queue": 1},
        },
        "limits": {"max_body_bytes": 20000, "max_batch_size": 4, "max_image_pixels": 10000},
        "batching": {"max_rows": 1},  # the upstream's own queue, without requests merged before it
    }
    gw = Gateway(tmp_module, config)
    gw.wait_ready()
    yield gw
    gw.stop()
    upstream.stop()


def _error(text: str) -> str:
    return error_body(text).decode()


def test_body_over_the_limit_is_413_with_or_without_length(gateway: Gateway) -> None:
    big = image_instances(1.0, batch=8)
    sized = gateway.client.post("/v1/models/cnn:predict", json=big)
    assert sized.status_code == 413
    assert sized.text == _error("Request body is over the limit of 20000 bytes")

    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b" " * 1000

    chunked = gateway.client.post("/v1/models/cnn:predict", content=chunks())
    assert chunked.status_code == 413
    assert chunked.text == _error("Request body is over the limit of 20000 bytes")


def test_batch_and_image_limits(gateway: Gateway) -> None:
    rows = gateway.client.post("/v1/classify/cnn", json={"images": [[0] * 784] * 5})
    assert rows.status_code == 400
    assert rows.text == _error("5 images are over the batch limit of 4")
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        request = protos.PredictRequest()
        request.model_spec.name = "cnn"
        from_numpy(np.zeros((5, 28, 28, 1), np.float32), out=request.inputs["image"])
        with pytest.raises(grpc.RpcError) as error:
            protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == "Input 'image' has batch size 5, over the limit of 4"
    buffer = io.BytesIO()
    Image.new("L", (200, 100)).save(buffer, format="PNG")
    image = gateway.client.post("/v1/classify/cnn", files={"file": ("big.png", buffer.getvalue(), "image/png")})
    assert image.status_code == 413
    assert image.text == _error("Image of 200x100 pixels is over the limit of 10000 pixels")


def test_full_upstream_queue_answers_429_not_a_pile_up(gateway: Gateway) -> None:
    results: list[int] = []

    def call() -> None:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            results.append(client.post("/v1/classify/slow", json={"image": [0] * 784}).status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:  # one in flight, one queued
        thread.start()
        time.sleep(0.3)
    rejected = gateway.client.post("/v1/classify/slow", json={"image": [0] * 784})
    assert rejected.status_code == 429
    assert rejected.text == _error("Upstream for 'slow' is at capacity; retry later")
    for thread in threads:
        thread.join()
    assert results == [200, 200]
    assert gateway.metric("tensorgate_gateway_upstream_rejected_total", upstream="slow_upstream") == 1


def test_caller_deadline_is_kept(gateway: Gateway) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        request = protos.PredictRequest()
        request.model_spec.name = "slow"
        from_numpy(np.zeros((1, 28, 28, 1), np.float32), out=request.inputs["image"])
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as error:
            protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=0.3)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 0.9  # the upstream would have taken 1 s


def test_graceful_shutdown_finishes_in_flight_requests(gateway: Gateway) -> None:
    results: dict[str, object] = {}

    def rest_call() -> None:
        with httpx.Client(base_url=gateway.url, timeout=30) as client:
            results["rest"] = client.post("/v1/classify/slow", json={"image": [0] * 784}).status_code

    def grpc_call() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            request = protos.PredictRequest()
            request.model_spec.name = "slow"  # queued behind the REST call, so in flight for about 2 s
            from_numpy(np.zeros((1, 28, 28, 1), np.float32), out=request.inputs["image"])
            time.sleep(0.1)
            response = protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=30)
            results["grpc"] = response.model_spec.name

    threads = [threading.Thread(target=rest_call), threading.Thread(target=grpc_call)]
    for thread in threads:
        thread.start()
    time.sleep(0.6)
    # SIGTERM with both in flight; uvicorn re-raises the signal once everything has drained.
    assert gateway.stop() in (0, -signal.SIGTERM)
    for thread in threads:
        thread.join()
    assert results == {"rest": 200, "grpc": "slow"}
    assert "Application shutdown complete." in gateway.log()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gateway.url}/healthz", timeout=2)
