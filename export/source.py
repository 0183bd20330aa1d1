"""The SavedModels to export (latest version of each) and the images every measurement uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.variants import FORMATS, ExportError
from training.data import Dataset, load_dataset, subset
from training.repository import latest_version, versions

MODELS = ("cnn", "lstm", "transformer", "ensemble")


@dataclass(frozen=True)
class Source:
    name: str
    version: int
    path: Path

    @property
    def versions(self) -> list[int]:
        return versions(self.path.parent)


def is_variant_dir(name: str) -> bool:
    return any(name.endswith("_" + format_name) for format_name in FORMATS)


def find_models(repo: Path) -> list[str]:
    """Servables in the repository whose directory holds numbered versions (variants excluded):
    the four project models first, then any other SavedModel servable."""
    if not repo.is_dir():
        raise ExportError(f"{repo}: model repository not found (pass --repo DIR; train first: python -m training)")
    found = [
        path.name
        for path in repo.iterdir()
        if path.is_dir() and not path.name.startswith(".") and not is_variant_dir(path.name) and versions(path)
    ]
    if not found:
        raise ExportError(
            f"{repo}: no SavedModels (no <model>/<version>/ directories); train first: python -m training --repo {repo}"
        )
    return sorted(found, key=lambda name: (MODELS.index(name) if name in MODELS else len(MODELS), name))


def source(repo: Path, name: str) -> Source:
    version = latest_version(repo / name)
    if version is None:
        raise ExportError(f"no versions under {repo / name}")
    path = repo / name / str(version)
    if not (path / "saved_model.pb").is_file():
        raise ExportError(f"{path} holds no saved_model.pb")
    return Source(name, version, path)


@dataclass(frozen=True)
class Images:
    """Float32 [n, 28, 28, 1] 0..255, as the contract takes them."""

    test: np.ndarray
    test_labels: np.ndarray
    calibration: np.ndarray


def load_images(test_size: int, calibration_size: int, data_dir: Path | None = None, seed: int = 0) -> Images:
    dataset: Dataset = load_dataset(data_dir=data_dir)
    test, labels = dataset.x_test, dataset.y_test
    if 0 < test_size < len(test):
        test, labels = test[:test_size], labels[:test_size]
    # Calibration draws from the training split only (never test images), class-balanced and seeded.
    calibration, _ = subset(dataset.x_train, dataset.y_train, calibration_size, seed)
    return Images(_contract(test), labels.astype(np.int64), _contract(calibration))


def _contract(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.astype(np.float32)[..., None])
