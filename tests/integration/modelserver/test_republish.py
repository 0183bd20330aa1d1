"""A version that failed to load is loaded again once a fixed directory is published under its number.

Found by the reliability check ``reload``: after a corrupt version 3 was reported, removing it and
renaming a good version 3 into place was ignored until the server restarted (the failed entry was
never retried), so the only way out was a restart or a new version number.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from serving import protos
from serving.tensors import from_numpy
from tests.integration.modelserver.conftest import RunningServer

pytestmark = pytest.mark.slow


def publish(base: Path, version: int, source: Path | None) -> None:
    """Hidden staging directory beside the versions, then rename (a corrupt SavedModel when no source)."""
    staging = Path(tempfile.mkdtemp(prefix=f".incoming-{version}-", dir=base))
    if source is None:
        (staging / "saved_model.pb").write_bytes(b"not a SavedModel" * 16)
    else:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    os.rename(staging, base / str(version))


def states(server: RunningServer) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{server.rest}/v1/models/cnn", timeout=5).json()
    return {entry["version"]: entry for entry in answer["model_version_status"]}


def wait_state(server: RunningServer, version: str, state: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = states(server).get(version)
        if entry is not None and entry["state"] == state:
            return entry
        time.sleep(0.2)
    raise AssertionError(f"version {version} never reached {state}: {states(server)}")


def predict_version(server: RunningServer) -> int:
    """The version that answers a Predict for the latest version."""
    request = protos.PredictRequest()
    request.model_spec.name = "cnn"
    from_numpy(np.zeros((1, 28, 28, 1), np.float32), request.inputs["image"])
    with grpc.insecure_channel(server.grpc_target) as channel:
        response = protos.PREDICTION_SERVICE.stub(channel).Predict(request, timeout=30)
    assert response.outputs["class_id"].tensor_shape.dim[0].size == 1
    return int(response.model_spec.version.value)


def test_corrupt_version_is_reported_then_replaced_by_a_good_one(
    launch: Any, quick_repo_cached: Path, tmp_path: Path
) -> None:
    base = tmp_path / "cnn"
    good = quick_repo_cached / "cnn" / "1"
    shutil.copytree(good, base / "1")
    server: RunningServer = launch(
        ["--model_name=cnn", f"--model_base_path={base}", "--file_system_poll_wait_seconds=1"]
    )

    publish(base, 3, None)
    failed = wait_state(server, "3", "END")
    assert failed["status"]["error_code"] != "OK"
    assert failed["status"]["error_message"]
    assert states(server)["1"]["state"] == "AVAILABLE"  # the old version keeps serving
    assert predict_version(server) == 1

    aside = Path(tempfile.mkdtemp(prefix=".removed-", dir=base))
    os.rename(base / "3", aside / "3")
    shutil.rmtree(aside)
    publish(base, 3, good)
    wait_state(server, "3", "AVAILABLE")
    assert predict_version(server) == 3
    wait_state(server, "1", "END")
    assert "Servable cnn version 3 was published again; loading it" in server.log()
