"""loadtest.one_user: the plain clients against real loopback servers, and the report's arithmetic."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadtest.one_user import added_p50, interleaved, markdown, measure, rest_caller, summarise


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the probe's connection expects

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        status = 200 if self.headers.get("x-api-key") == "k" else 401
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_rest_caller_reuses_one_connection_and_fails_on_an_error_status(echo_url):
    call = rest_caller(echo_url, "/v1/models/cnn:predict", b'{"instances": []}', "application/json", "k")
    latencies = measure(call, 20)
    assert len(latencies) == 20 and all(value > 0 for value in latencies)
    refused = rest_caller(echo_url, "/v1/models/cnn:predict", b"{}", "application/json", "wrong")
    with pytest.raises(RuntimeError, match="HTTP 401"):
        refused()


def test_summary_takes_the_median_of_round_medians_and_the_ratio_to_the_peer():
    fast = summarise([[1.0, 1.0, 9.0], [2.0, 2.0, 2.0], [1.0, 3.0, 3.0]])
    assert fast["p50_ms"] == 2.0 and fast["requests"] == 9 and fast["round_p50_ms"] == [1.0, 2.0, 3.0]
    result = {
        "started": "2026-12-03T17:00:00+00:00",
        "machine": {"cpu_model": "AMD EPYC", "cores_logical": 2, "memory_gib": 23.5, "load_average_start": [0.1]},
        "command": "python -m loadtest.one_user --repo models",
        "requests": 3,
        "rounds": 3,
        "targets": {
            "gateway-rest": {"what": "gateway", **fast},
            "peer": {"what": "LitServe", **summarise([[6.0, 6.0, 6.0]] * 3)},
        },
    }
    text = markdown(result)
    assert "| gateway-rest | gateway | 2.00 |" in text and "| 3.00 |" in text  # 6 ms / 2 ms
    assert "| peer | LitServe | 6.00 | 6.00 | - |" in text


def test_interleaved_rounds_alternate_the_targets_and_added_p50_is_the_median_of_round_differences():
    order: list[str] = []

    def caller(name: str):
        return lambda: order.append(name)

    measured = interleaved({"a": caller("a"), "b": caller("b")}, requests=3, rounds=2, warmup=1)
    # warm-up (one each), then per round: a's three requests, b's three (each measured after 20 untimed)
    assert order == ["a", "b", *(["a"] * 23 + ["b"] * 23) * 2]
    assert [len(r) for r in measured["a"]] == [3, 3] and len(measured["b"]) == 2
    added = added_p50([[3.0, 3.0, 3.0], [5.0, 5.0, 5.0], [4.0, 4.0, 4.0]], [[2.0] * 3, [2.5] * 3, [3.5] * 3])
    assert added == {"median_ms": 1.0, "round_ms": [1.0, 2.5, 0.5]}
    with pytest.raises(ValueError):  # rounds are paired: a missing round is an error, not a shorter median
        added_p50([[1.0]], [[1.0], [1.0]])
