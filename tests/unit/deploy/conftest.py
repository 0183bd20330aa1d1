from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deploy.checks.common import ROOT
from serving import protos

LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


def write_stand_in_export(repo: Path, base: str = "/models") -> Path:
    """The files the export writes for TF Serving, small and by hand: for the checks' own tests.
    (test_compose.py also checks the compose file against a real export when export/ is there.)"""
    config = protos.ModelServerConfig()
    for name in ("cnn", "lstm"):
        (repo / name / "1").mkdir(parents=True)
        model = config.model_config_list.config.add()
        model.name = name
        model.base_path = f"{base}/{name}"
        model.model_platform = "tensorflow"
    (repo / "models.config").write_text(str(config))
    (repo / "modelserver.config").write_text(str(config))
    (repo / "batching_parameters.txt").write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n"
        "allowed_batch_sizes: 8\nallowed_batch_sizes: 32\nallowed_batch_sizes: 64\n"
    )
    (repo / "monitoring.config").write_text(
        'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'
    )
    return repo


@pytest.fixture
def stand_in_repo(tmp_path: Path) -> Path:
    return write_stand_in_export(tmp_path / "models")


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """A copy of the files the compose file and manifests refer to, safe to break."""
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "deploy", root / "deploy", ignore=shutil.ignore_patterns("__pycache__", "checks"))
    shutil.copy(ROOT / "Dockerfile", root / "Dockerfile")
    shutil.copy(ROOT / ".dockerignore", root / ".dockerignore")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    if LOCUSTFILE.is_file():
        (root / "loadtest").mkdir()
        shutil.copy(LOCUSTFILE, root / "loadtest" / "locustfile.py")
    return root


def needs_locustfile() -> None:
    if not LOCUSTFILE.is_file():
        pytest.skip("loadtest/locustfile.py does not exist yet (issue 6): the Locust services mount it")
