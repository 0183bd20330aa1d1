"""A user's own IDX data: three classes, names from a labels file, trained end to end and evaluated."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
NAMES = ["top", "bottom", "left"]


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _images(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise with one bright half: the top, the bottom or the left one (the class)."""
    labels = np.arange(count) % 3
    images = rng.integers(0, 90, (count, 28, 28))
    images[labels == 0, :14, :] += 150
    images[labels == 1, 14:, :] += 150
    images[labels == 2, :, :14] += 150
    return images, labels


@pytest.fixture(scope="module")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 900), ("t10k", 150)):
        images, labels = _images(count, rng)
        _write_idx(directory / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte", labels)
    labels_file = directory / "labels.txt"
    labels_file.write_text("\n".join(NAMES) + "\n")
    return directory, labels_file


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=900)


def test_train_and_evaluate_own_three_class_data(own_data: tuple[Path, Path], tmp_path: Path) -> None:
    directory, labels_file = own_data
    repo = tmp_path / "repo"
    common = ["--dataset", "idx", "--data-dir", str(directory), "--labels", str(labels_file)]
    trained = _run("-m", "training", "--model", "all", "--repo", str(repo), "--epochs", "2", *common)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "loaded idx from" in trained.stdout and "3 classes" in trained.stdout
    images, labels = _images(30, np.random.default_rng(5))
    for name in ("cnn", "lstm", "transformer", "ensemble"):
        card = json.loads((repo / name / "1" / "assets.extra" / "model_card.json").read_text())
        assert card["labels"] == NAMES
        assert (repo / name / "1" / "assets" / "labels.txt").read_text().splitlines() == NAMES
        outputs = tf.saved_model.load(str(repo / name / "1")).signatures["serving_default"](
            image=tf.constant(images[..., None], tf.float32)
        )
        assert outputs["probabilities"].shape == (30, 3)
        if name != "ensemble":
            assert card["model_config"]["classes"] == 3 and card["model_config"]["flip_tta"] is False
            assert card["training"]["recipe"]["flip"] is False  # a mirrored shape may be another class
    # bright halves are easy: the ensemble must get most of them right after two epochs
    accuracy = float((outputs["class_id"].numpy() == labels).mean())
    assert accuracy >= 0.8, accuracy
    assert outputs["member_probabilities"].shape == (30, 3, 3)

    report_dir = tmp_path / "report"
    evaluated = _run("-m", "training.evaluate", "--repo", str(repo), "--out", str(report_dir), *common)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert report["labels"] == NAMES and report["test_images"] == 150
    for name, entry in report["models"].items():
        low, high = entry["test_accuracy_ci95"]
        assert low <= entry["test_accuracy"] <= high
        assert {"ece", "ece_scaled", "temperature"} <= set(entry["calibration"])
        card = json.loads((repo / name / "1" / "assets.extra" / "model_card.json").read_text())
        served = card["calibration"]["temperature"] if name != "ensemble" else None
        assert entry["calibration"]["served_temperature"] == served, name
    assert 0.0 <= report["ensemble_vs_best_member"]["mcnemar"]["p_value"] <= 1.0
    text = (report_dir / "report.md").read_text()
    assert "McNemar" in text and "| model | served T | ECE |" in text


def test_bad_own_data_gives_one_line(own_data: tuple[Path, Path], tmp_path: Path) -> None:
    directory, _ = own_data
    two = tmp_path / "two.txt"
    two.write_text("top\nbottom\n")
    result = _run("-m", "training", "--dataset", "idx", "--data-dir", str(directory), "--labels", str(two))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {directory / 'train-labels-idx1-ubyte'}: label 2 is outside the 2 classes (0..1)"
    )
