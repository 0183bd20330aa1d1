"""Finding SavedModels, the calibration set, the TensorRT guard and the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export import report, tensorrt
from export.source import find_models, load_images
from export.variants import ExportError


def test_missing_repo_and_repo_without_savedmodels(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="model repository not found"):
        find_models(tmp_path / "nowhere")
    (tmp_path / "cnn").mkdir()  # no version inside
    (tmp_path / "cnn_onnx" / "1").mkdir(parents=True)  # a variant is not a source
    with pytest.raises(ExportError, match="no SavedModels"):
        find_models(tmp_path)


def test_project_models_come_first(tmp_path: Path) -> None:
    for name in ("zeta", "ensemble", "cnn", "cnn_int8", "lstm"):
        (tmp_path / name / "1").mkdir(parents=True)
    assert find_models(tmp_path) == ["cnn", "lstm", "ensemble", "zeta"]


def test_calibration_set_is_training_images_balanced_and_deterministic() -> None:
    first = load_images(test_size=50, calibration_size=300)
    second = load_images(test_size=50, calibration_size=300)
    assert first.calibration.shape == (300, 28, 28, 1)
    assert first.calibration.dtype == np.float32
    np.testing.assert_array_equal(first.calibration, second.calibration)
    assert first.test.shape == (50, 28, 28, 1)
    # Never a test image: none of the calibration images equals one of the 10,000 test images.
    full_test = {image.tobytes() for image in load_images(0, 10).test}
    assert not any(image.tobytes() in full_test for image in first.calibration)


def test_tensorrt_says_why_it_cannot_build_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt, "gpu_visible", lambda: False)
    reason = tensorrt.unavailable_reason()
    assert reason is not None and "no NVIDIA GPU is visible" in reason
    if not tensorrt.tf_trt_available():  # TF 2.18+: no TF-TRT, said in the same line
        assert "was not built with TensorRT (no TF-TRT)" in reason
    monkeypatch.setattr(tensorrt, "gpu_visible", lambda: True)
    monkeypatch.setattr(tensorrt.importlib.util, "find_spec", lambda name: None)
    assert "tensorrt Python package is not installed" in (tensorrt.unavailable_reason() or "")


def test_tensorrt_write_skips_without_leaving_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from export.variants import Skipped

    monkeypatch.setattr(tensorrt, "gpu_visible", lambda: False)
    with pytest.raises(Skipped, match="no NVIDIA GPU"):
        tensorrt.write(tmp_path / "model.onnx", np.zeros((4, 28, 28, 1), np.float32), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_markdown_lists_flagged_and_failed() -> None:
    rows = [
        report.Row("cnn", "savedmodel", "cnn", 1, "source", accuracy=0.9, size_bytes=1000, speed={"p50_ms": 1.0}),
        report.Row("cnn", "int8", "cnn_int8", 1, "converted", accuracy=0.8, agreement=0.95, flagged="agreement low"),
        report.Row("lstm", "int8", "lstm_int8", 1, "failed", reason="TFLite converter: op X"),
    ]
    meta = {
        "created": "now",
        "machine": "test",
        "test_images": 10,
        "batch1_runs": 1,
        "throughput_runs": 1,
        "runtimes": "r",
    }
    text = report.markdown(rows, meta)
    assert "- `cnn_int8`: agreement low" in text
    assert "- `lstm_int8` (failed): TFLite converter: op X" in text
    assert "| cnn | source | 90.00% |" in text


def test_goals_are_checked_from_the_numbers() -> None:
    rows = [
        report.Row("cnn", "savedmodel", "cnn", 1, "source", accuracy=0.9, speed={"p50_ms": 2.0}),
        report.Row(
            "cnn", "int8", "cnn_int8", 1, "converted", accuracy_delta=-0.5, size_ratio=0.25, speed={"p50_ms": 1.0}
        ),
        report.Row("lstm", "dynamic", "lstm_dynamic", 1, "converted", accuracy_delta=0.1),
        report.Row("cnn", "onnx", "cnn_onnx", 1, "converted", agreement=0.9995),
    ]
    lines = report.goals(rows)
    assert lines[3] == (
        "- cnn int8: accuracy -0.50 points (within 0.3: NOT met), size 0.25x (<= 0.3x: met), "
        "batch-1 p50 0.50x the SavedModel's (<= 0.6x: met)"
    )
    assert lines[4] == "- lstm dynamic: accuracy +0.10 points (within 0.3: met)"
    assert lines[5] == "- onnx agreement >= 99.9% for every model: met (lowest cnn_onnx 99.95%)"
