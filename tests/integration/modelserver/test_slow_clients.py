"""The model server's REST front against slow clients and SIGTERM under load (found by
``loadtest.reliability``): a body or headers sent byte by byte get 408 within the REST timeout, a
declared Content-Length over the limit is 413 before reading, and in-flight REST requests finish
after SIGTERM (they were cut off: the REST server was not awaited on shutdown)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from loadtest.reliability import rawhttp
from tests.integration.gateway.test_hostile import _drip
from tests.integration.modelserver.conftest import RunningServer

pytestmark = pytest.mark.slow
PREDICT = "/v1/models/cnn:predict"


@pytest.fixture(scope="module")
def server(launch, quick_repo: Path) -> RunningServer:  # type: ignore[no-untyped-def]
    return launch(  # type: ignore[no-any-return]
        [
            "--model_name=cnn",
            f"--model_base_path={quick_repo / 'cnn'}",
            "--rest_api_timeout_in_ms=1500",
            "--rest_api_max_body_bytes=100000",
        ]
    )


def _instances(rows: int) -> bytes:
    return orjson.dumps({"instances": [[[[float(i % 255)]] * 28] * 28 for i in range(rows)]})


def test_slow_body_and_headers_get_408(server: RunningServer) -> None:
    body = _instances(1)
    head = rawhttp.head("POST", PREDICT, {"Content-Type": "application/json"}, len(body), False)
    seconds, reply = _drip(server.rest_port, body, head)
    assert reply.status == 408 and reply.error_text() == "Request body not received within 1.5 seconds"
    assert seconds < 5
    seconds, reply = _drip(server.rest_port, b"GET /v1/models/cnn HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200)
    assert reply.status == 408 and reply.error_text() == "Request headers not received within 1.5 seconds"
    assert httpx.get(f"{server.rest}/v1/models/cnn", timeout=10).status_code == 200


def test_declared_length_over_the_limit_is_413_at_once(server: RunningServer) -> None:
    reply = rawhttp.request(server.rest, "POST", PREDICT, b"{}", length=100_001, timeout=10)
    assert reply.status == 413 and reply.seconds < 1.0
    assert reply.error_text() == "Request body is larger than the limit of 100000 bytes"


def test_sigterm_lets_in_flight_rest_requests_finish(launch, quick_repo: Path) -> None:  # type: ignore[no-untyped-def]
    server = launch(["--model_name=cnn", f"--model_base_path={quick_repo / 'cnn'}"])
    body = _instances(100)
    statuses: list[int | str] = []

    # Clients made and connected beforehand: building six httpx clients in six threads on two busy
    # cores could take longer than the 0.3 s below, so some requests were not yet in flight at SIGTERM.
    clients = [httpx.Client(base_url=server.rest, timeout=30) for _ in range(6)]
    for client in clients:
        assert client.get("/v1/models/cnn").status_code == 200

    def call(client: httpx.Client) -> None:
        try:
            answer = client.post(PREDICT, content=body)
            statuses.append(answer.status_code if len(answer.json()["predictions"]) == 100 else "short")
        except Exception as error:  # any failure is reported, not lost with the thread
            statuses.append(repr(error))

    threads = [threading.Thread(target=call, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(60)
    for client in clients:
        client.close()
    assert statuses == [200] * 6
    assert server.process.wait(30) == 0
