"""The files the export writes start our model server: every servable in modelserver.config loads,
answers a Predict with the contract's outputs, and batching/monitoring files are accepted."""

from __future__ import annotations

import httpx
import numpy as np
from google.protobuf import text_format

from tests.integration.export.conftest import Exported
from tests.integration.modelserver.conftest import start_server


def test_modelserver_serves_every_exported_servable(exported: Exported, tmp_path) -> None:
    from tensorflow_serving.config import model_server_config_pb2

    repo = exported.repo
    config = text_format.Parse((repo / "modelserver.config").read_text(), model_server_config_pb2.ModelServerConfig())
    names = [model.name for model in config.model_config_list.config]
    assert any(name.endswith("_onnx") for name in names) and any(name.endswith("_dynamic") for name in names)
    server = start_server(
        [
            f"--model_config_file={repo / 'modelserver.config'}",
            "--enable_batching",
            f"--batching_parameters_file={repo / 'batching_parameters.txt'}",
            f"--monitoring_config_file={repo / 'monitoring.config'}",
        ],
        tmp_path,
        timeout=300,
    )
    try:
        image = np.zeros((2, 28, 28, 1), np.float32).tolist()
        with httpx.Client(base_url=server.rest, timeout=60) as client:
            for name in names:
                status = client.get(f"/v1/models/{name}").json()
                assert status["model_version_status"][0]["state"] == "AVAILABLE", (name, status, server.log())
                response = client.post(f"/v1/models/{name}:predict", json={"inputs": {"image": image}})
                assert response.status_code == 200, (name, response.text)
                outputs = response.json()["outputs"]
                assert len(outputs["class_id"]) == 2 and np.array(outputs["probabilities"]).shape == (2, 10)
            metrics = client.get("/monitoring/prometheus/metrics")
            assert metrics.status_code == 200
        for model in ("cnn", "lstm", "transformer", "ensemble"):  # the warmup records were replayed at load
            warmup = repo / model / "1" / "assets.extra" / "tf_serving_warmup_requests"
            assert f"{warmup}. Number of warmup records read: 3." in server.log()
    finally:
        server.stop()
