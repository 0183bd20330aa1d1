"""``server.workers``: several gateway processes on the same ports, started, served and stopped together."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import psutil
import pytest

from serving import protos
from serving.gateway.config import ConfigError, load_settings
from serving.tensors import from_numpy, to_numpy
from tests.integration.gateway.conftest import FakeUpstream, Gateway, image_instances

pytestmark = pytest.mark.slow


def test_two_workers_share_both_ports_and_stop_cleanly(tmp_path: Path) -> None:
    upstream = FakeUpstream(tmp_path, "cnn")
    gateway = Gateway(
        tmp_path,
        {
            "upstreams": {"default": {"targets": [upstream.target]}},
            "servables": {"cnn": "default"},
            "server": {"workers": 2},
        },
    )
    try:
        gateway.wait_ready()
        workers = psutil.Process(gateway.pid).children()
        assert len(workers) == 2
        deadline = time.monotonic() + 60  # the first worker ready makes /readyz answer; the other may be starting
        while _listening(gateway) != {worker.pid for worker in workers} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _listening(gateway) == {worker.pid for worker in workers}  # both workers hold both ports
        for _ in range(20):  # a new connection each time: the kernel spreads them over the workers
            answer = httpx.post(f"{gateway.url}/v1/models/cnn:predict", json=image_instances(100.0), timeout=10)
            assert answer.status_code == 200 and answer.json()["predictions"][0]["class_id"] == 3
        request = protos.PredictRequest()
        request.model_spec.name = "cnn"
        from_numpy(np.full((1, 28, 28, 1), 100.0, np.float32), out=request.inputs["image"])
        with grpc.insecure_channel(f"127.0.0.1:{gateway.grpc_port}") as channel:
            reply = protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=10)
        assert to_numpy(reply.outputs["class_id"]).tolist() == [3]
    finally:
        status = gateway.stop(signal.SIGTERM)
        upstream.stop()
    assert status == 0
    assert not any(worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE for worker in workers)


def _listening(gateway: Gateway) -> set[int]:
    """Pids holding both of the gateway's ports."""
    holders: dict[int, set[int]] = {gateway.port: set(), gateway.grpc_port: set()}
    for connection in psutil.net_connections("tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port in holders and connection.pid:
            holders[connection.laddr.port].add(connection.pid)
    return holders[gateway.port] & holders[gateway.grpc_port]


def test_workers_need_fixed_ports() -> None:
    with pytest.raises(ConfigError, match=r"server\.workers"):
        load_settings(repo=None, http_port=0, server={"workers": 2})
