"""--shutdown_grace_seconds (this server's flag; TF Serving has no graceful stop): how long in-flight
requests get after SIGTERM. A batching queue with a 3 s timeout holds a one-row request for 3 s."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from serving import protos
from serving.tensors import from_numpy

pytestmark = pytest.mark.slow


def held_request(channel: grpc.Channel) -> grpc.Future:
    request = protos.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].CopyFrom(from_numpy(np.array([[1.0]], np.float32)))
    return protos.PREDICTION_SERVICE.stub(channel).Predict.future(request, timeout=30)


@pytest.mark.parametrize(("grace", "answered"), [(1.0, False), (10.0, True)])
def test_grace_decides_whether_a_held_request_is_answered(
    launch, tfs_testdata: Path, tmp_path: Path, grace: float, answered: bool
) -> None:
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 3000000 }\n")
    server = launch(
        [
            f"--model_base_path={tfs_testdata / 'saved_model_half_plus_two_cpu'}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            f"--shutdown_grace_seconds={grace}",
        ]
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        future = held_request(channel)
        time.sleep(0.5)  # the request waits in the batch queue
        stopped = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        if answered:
            assert list(future.result(timeout=30).outputs["y"].float_val) == [2.5]
        else:
            with pytest.raises(grpc.RpcError):
                future.result(timeout=30)
    assert server.process.wait(30) == 0
    if answered:  # it waited for the queue's 3 s, 2.5 s of them after SIGTERM
        assert time.monotonic() - stopped > 2.0
