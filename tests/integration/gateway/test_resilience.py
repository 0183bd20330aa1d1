"""Upstreams that die and come back: fail fast with 503, recover alone, move traffic to a live target."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from serving.tfserving.encode import error_body
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow

BODY = image_instances(100.0)
UNAVAILABLE_BODIES = {
    error_body("Upstream failed to serve 'cnn' (UNAVAILABLE)").decode(),
    error_body("No upstream is available for 'cnn'").decode(),
}


def _wait_for(predicate: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met")


def test_killed_upstream_fails_fast_with_503_and_recovers(tmp_module: Path) -> None:
    upstream = FakeUpstream(tmp_module, "cnn")
    gateway = Gateway(
        tmp_module,
        {
            "repo": None,
            "servables": {"cnn": "default"},
            "upstreams": {"default": {"targets": [upstream.target]}},
            "timeouts": {"request_s": 3.0, "status_poll_s": 0.2, "probe_s": 0.2},
        },
    )
    try:
        gateway.wait_ready()
        assert gateway.client.post("/v1/models/cnn:predict", json=BODY).status_code == 200
        upstream.stop(signal.SIGKILL)
        for _ in range(5):
            started = time.monotonic()
            response = gateway.client.post("/v1/models/cnn:predict", json=BODY)
            assert time.monotonic() - started < 3.0  # within the request deadline, never a hang
            assert response.status_code == 503
            assert response.text in UNAVAILABLE_BODIES
            assert "127.0.0.1" not in response.text
        _wait_for(lambda: gateway.client.get("/readyz").status_code == 503)
        assert gateway.client.get("/readyz").json()["error"].startswith("Not ready: cnn: ")

        upstream.restart()
        _wait_for(lambda: gateway.client.get("/readyz").status_code == 200)
        _wait_for(lambda: gateway.client.post("/v1/models/cnn:predict", json=BODY).status_code == 200)
        assert gateway.client.post("/v1/models/cnn:predict", json=BODY).status_code == 200
    finally:
        gateway.stop()
        upstream.stop()


def test_two_targets_share_load_and_survive_one_dying(tmp_module: Path) -> None:
    first, second = FakeUpstream(tmp_module, "cnn"), FakeUpstream(tmp_module, "cnn")
    gateway = Gateway(
        tmp_module,
        {
            "repo": None,
            "servables": {"cnn": "default"},
            "upstreams": {"default": {"targets": [first.target, second.target]}},
            "timeouts": {"probe_s": 0.2},
        },
    )
    try:
        gateway.wait_ready()
        for _ in range(40):
            assert gateway.client.post("/v1/models/cnn:predict", json=BODY).status_code == 200
        predicts = [sum(line.startswith("Predict") for line in u.call_lines()) for u in (first, second)]
        assert min(predicts) >= 15, predicts  # round-robin: about 20 each

        first.stop(signal.SIGKILL)
        statuses = [gateway.client.post("/v1/models/cnn:predict", json=BODY).status_code for _ in range(40)]
        assert statuses == [200] * 40  # retried on the live target, then the dead one is ejected
        assert gateway.metric("tensorgate_gateway_upstream_ejections_total", target=first.target) == 1
        assert gateway.metric("tensorgate_gateway_upstream_target_healthy", target=first.target) == 0
        after = sum(line.startswith("Predict") for line in second.call_lines())
        assert after - predicts[1] == 40

        first.restart()
        _wait_for(lambda: gateway.metric("tensorgate_gateway_upstream_target_healthy", target=first.target) == 1)
        before = sum(line.startswith("Predict") for line in first.call_lines())
        for _ in range(10):
            assert gateway.client.post("/v1/models/cnn:predict", json=BODY).status_code == 200
        assert sum(line.startswith("Predict") for line in first.call_lines()) - before >= 4
    finally:
        gateway.stop()
        first.stop()
        second.stop()
