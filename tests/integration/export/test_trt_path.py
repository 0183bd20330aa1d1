"""The GPU route's plumbing, with the engine builder replaced (no GPU here): an engine is staged, kept,
reported and left out of modelserver.config, since the model server cannot run engines yet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from export import cli, exporter, onnx, tensorrt
from serving.modelserver.runtimes import tensorrt as trt_runtime

FAST = ["--test-size", "20", "--calibration-size", "20", "--latency-runs", "2", "--throughput-runs", "1"]


def test_engine_is_kept_but_not_served(
    quick_repo_cached: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "models"
    shutil.copytree(quick_repo_cached / "cnn", repo / "cnn")
    built: list[tuple[Path, int]] = []

    def fake_onnx(saved_model: Path, destination: Path) -> None:
        (destination / "model.onnx").write_bytes(b"onnx")

    def fake_engine(onnx_model: Path, calibration: np.ndarray, destination: Path) -> None:
        built.append((onnx_model, len(calibration)))
        (destination / "model.plan").write_bytes(b"engine")

    monkeypatch.setattr(tensorrt, "unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_runtime, "unavailable_reason", lambda: None)  # as on a GPU machine
    monkeypatch.setattr(tensorrt, "tf_trt_available", lambda: False)
    monkeypatch.setattr(onnx, "write", fake_onnx)
    monkeypatch.setattr(tensorrt, "write", fake_engine)
    code = cli.main(["--repo", str(repo), "--formats", "trt", *FAST])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (repo / "cnn_trt" / "1" / "model.plan").read_bytes() == b"engine"
    assert built[0][1] == 20  # calibrated on the representative set
    assert f"not measured: {exporter.TRT_NOT_RUNNABLE}" in out
    assert "cnn_trt" not in (repo / "modelserver.config").read_text()
    rows = {row["servable"]: row for row in json.loads((repo / "export_report.json").read_text())["servables"]}
    assert rows["cnn_trt"]["status"] == "converted"
    assert rows["cnn_trt"]["flagged"].startswith("not measured")
