"""A client that goes away mid-request, against the real server on both fronts. TF Serving does not
notice: ``model_servers/prediction_service_impl.cc`` never looks at the call's cancellation and calls
``RecordModelRequestCount`` with the outcome of the run, and ``http_rest_api_handler.cc`` (over
``net_http``'s evhttp server) neither watches the connection; so the request runs to its end, counts
as what it came to (OK here), never as CANCELLED, and the server goes on serving. A batching queue with
a 3 s timeout holds a one-row request long enough for the client to leave first."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from serving import protos
from serving.tensors import from_numpy

pytestmark = pytest.mark.slow

METRICS = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def held_server(launch, tfs_testdata: Path, tmp_path_factory: pytest.TempPathFactory):
    config = tmp_path_factory.mktemp("disconnect")
    batching = config / "batching.config"
    batching.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 3000000 }\n")
    monitoring = config / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true, path: "{METRICS}" }}\n')
    return launch(
        [
            f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            f"--monitoring_config_file={monitoring}",
        ]
    )


def request_count(server, status: str) -> float:
    text = httpx.get(server.rest + METRICS, timeout=10).text
    series = f':tensorflow:serving:request_count{{model_name="default",status="{status}"}}'
    line = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(line.group(1)) if line else 0.0


def wait_for_count(server, status: str, expected: float, seconds: float = 20.0) -> float:
    deadline = time.monotonic() + seconds
    while (count := request_count(server, status)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


def still_serves(server) -> None:
    answer = httpx.post(f"{server.rest}/v1/models/default:predict", json={"instances": [2.0]}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [3.0]}


def test_rest_client_that_closes_its_connection_is_counted_by_the_outcome(held_server) -> None:
    before_ok, before_cancelled = request_count(held_server, "OK"), request_count(held_server, "CANCELLED")
    body = json.dumps({"instances": [1.0]}).encode()
    head = (
        f"POST /v1/models/default:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", held_server.rest_port), timeout=10) as sock:
        sock.sendall(head + body)
        time.sleep(0.5)  # the request waits in the 3 s batch queue; the client leaves
    assert wait_for_count(held_server, "OK", before_ok + 1) == before_ok + 1
    assert request_count(held_server, "CANCELLED") == before_cancelled
    still_serves(held_server)
    assert "Traceback" not in held_server.log()


def test_grpc_client_that_cancels_is_counted_by_the_outcome(held_server) -> None:
    before_ok, before_cancelled = request_count(held_server, "OK"), request_count(held_server, "CANCELLED")
    request = protos.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(from_numpy(np.array([[1.0]], np.float32)))
    with grpc.insecure_channel(held_server.grpc_target) as channel:
        future = protos.PREDICTION_SERVICE.stub(channel).Predict.future(request, timeout=30)
        time.sleep(0.5)  # held in the batch queue
        assert future.cancel()
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
    # not counted when the client left, but when the run ended (the queue's 3 s), with its outcome
    assert request_count(held_server, "OK") == before_ok
    assert wait_for_count(held_server, "OK", before_ok + 1) == before_ok + 1
    assert request_count(held_server, "CANCELLED") == before_cancelled
    still_serves(held_server)
    assert "Traceback" not in held_server.log()
