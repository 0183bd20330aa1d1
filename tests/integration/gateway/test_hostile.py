"""Regressions found by ``loadtest.reliability``'s hostile and shutdown checks: slow clients (408),
decompression bombs (413), request bytes that are not a message (INVALID_ARGUMENT), over-long
model names (404, not 429 with grpc internals), and exit status 0 after a graceful stop."""

from __future__ import annotations

import signal
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest

from loadtest.reliability import rawhttp
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["httptools", "h11"])  # server.http_parser: both keep the limits
def gateway(tmp_module: Path, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    upstream = FakeUpstream(tmp_module, "cnn")
    config = {
        "repo": None,
        "servables": {"cnn": "default"},
        "upstreams": {"default": {"targets": [upstream.target]}},
        "timeouts": {"header_read_s": 1.0, "body_read_s": 1.0},
        "server": {"http_parser": request.param},
    }
    gw = Gateway(tmp_module, config)
    gw.wait_ready()
    yield gw
    gw.stop()
    upstream.stop()


def _drip(port: int, data: bytes, first: bytes = b"") -> tuple[float, rawhttp.Reply]:
    """Send ``first`` whole, then ``data`` a byte every 0.1 s until the server answers or closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(first)
        sock.setblocking(False)
        started = time.monotonic()
        for byte in data:
            try:
                answer = sock.recv(65536)
                break
            except BlockingIOError:
                sock.send(bytes([byte]))
                time.sleep(0.1)
        else:
            raise AssertionError("the server waited for the whole slow request")
        sock.setblocking(True)
        while chunk := sock.recv(65536):
            answer += chunk
        return time.monotonic() - started, rawhttp.parse(answer)


def test_requests_on_one_connection_are_answered(gateway: Gateway, request: pytest.FixtureRequest) -> None:
    for value in (0.0, 255.0, 0.0):
        answer = gateway.client.post("/v1/models/cnn:predict", json=image_instances(value))
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 1
    assert f"{request.node.callspec.params['gateway']} HTTP parser" in gateway.log()


def test_a_body_sent_byte_by_byte_gets_408_and_the_connection_closes(gateway: Gateway) -> None:
    body = orjson.dumps(image_instances(0.0))
    head = rawhttp.head("POST", "/v1/models/cnn:predict", {"Content-Type": "application/json"}, len(body), False)
    seconds, reply = _drip(gateway.port, body, head)
    assert reply.status == 408 and reply.headers["connection"] == "close"
    assert reply.error_text() == "Request body not received within 1 seconds"
    assert seconds < 4


def test_headers_sent_byte_by_byte_get_408(gateway: Gateway) -> None:
    seconds, reply = _drip(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200)
    assert reply.status == 408
    assert reply.error_text() == "Request headers not received within 1 seconds"
    assert seconds < 4
    assert gateway.client.get("/healthz").status_code == 200


def test_malformed_http_gets_a_json_400(gateway: Gateway) -> None:
    reply = rawhttp.request(gateway.url, "POST", "/v1/models/cnn:predict", b"{}", {"Content-Length": "12ab"}, None)
    assert reply.status == 400 and reply.error_text() == "Invalid HTTP request received."


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_413_not_500(gateway: Gateway) -> None:
    # 10^10 pixels: over twice Pillow's own limit, which raises DecompressionBombError in Image.open
    answer = gateway.client.post(
        "/v1/classify/cnn", content=_png_declaring(100_000, 100_000), headers={"Content-Type": "image/png"}
    )
    assert answer.status_code == 413
    assert answer.json() == {"error": "Image is over the limit of 16777216 pixels"}


def test_request_bytes_that_are_not_a_message_are_invalid_argument(gateway: Gateway) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
        method = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(grpc.RpcError) as error:
            method(b"\xff" * 64, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.value.details() or "").startswith("Could not parse the request message")


def test_an_over_long_model_name_is_404(gateway: Gateway) -> None:
    answer = gateway.client.post("/v1/models/" + "x" * 10_000 + ":predict", json=image_instances(0.0))
    assert answer.status_code == 404
    assert answer.json() == {"error": "Servable not found: a name of 10000 characters (the limit is 1024)"}


def test_graceful_stop_exits_0(tmp_module: Path) -> None:
    upstream = FakeUpstream(tmp_module, "cnn")
    gw = Gateway(
        tmp_module,
        {"repo": None, "servables": {"cnn": "default"}, "upstreams": {"default": {"targets": [upstream.target]}}},
    )
    try:
        gw.wait_ready()
        assert gw.stop(signal.SIGTERM) == 0  # uvicorn re-raised the signal: -15
    finally:
        gw.stop()
        upstream.stop()
