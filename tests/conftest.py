from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TFS_TESTDATA = ROOT.parent / "shared" / "fixtures" / "tf_serving_testdata"
QUICK_MODELS = ("cnn", "lstm", "transformer", "ensemble")
# Small enough for CI (about a minute on 2 cores), large enough to beat chance by a wide margin.
QUICK_ARGS = ["--profile", "quick", "--epochs", "3", "--train-size", "2000", "--seed", "0"]


@pytest.fixture(scope="session")
def tfs_testdata() -> Path:
    """TF Serving's own test models (read in place from ../shared; never copied into the project)."""
    if not (TFS_TESTDATA / "saved_model_half_plus_two_cpu").is_dir():
        pytest.skip(f"TF Serving's test models are not at {TFS_TESTDATA} (CI has ../shared beside the clone)")
    return TFS_TESTDATA


def _training_fingerprint() -> str:
    digest = hashlib.sha256(" ".join(QUICK_ARGS).encode())
    for path in sorted((ROOT / "training").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _build_quick_repo(destination: Path) -> None:
    staging = destination.with_name(destination.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "training", "--model", "all", "--repo", str(staging), *QUICK_ARGS],
        check=True,
        cwd=ROOT,
    )
    try:
        os.rename(staging, destination)
    except OSError:  # another test session finished the same build first
        shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(scope="session")
def quick_repo_cached() -> Path:
    """Quick-trained cnn/lstm/transformer/ensemble (version 1), built once per training-code version.

    Cached under .pytest_cache keyed by a hash of training/ so repeated local runs skip training;
    a fresh clone (CI) trains once per session. Tests must not modify it: use `quick_repo`.
    """
    base = Path(os.environ.get("TENSORGATE_TEST_CACHE", ROOT / ".pytest_cache" / "tensorgate-quick-repo"))
    base.mkdir(parents=True, exist_ok=True)
    destination = base / _training_fingerprint()
    if not all((destination / name / "1" / "saved_model.pb").is_file() for name in QUICK_MODELS):
        shutil.rmtree(destination, ignore_errors=True)
        for stale in base.iterdir():
            if ".partial-" not in stale.name:
                shutil.rmtree(stale, ignore_errors=True)
        _build_quick_repo(destination)
    return destination


@pytest.fixture(scope="session")
def quick_repo(quick_repo_cached: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the quick model repository for this test session (safe to add versions to)."""
    copy = tmp_path_factory.mktemp("quick-repo") / "models"
    shutil.copytree(quick_repo_cached, copy)
    return copy
