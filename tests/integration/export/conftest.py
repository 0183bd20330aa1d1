"""One export of the quick models per test session (conversion is the slow part), shared read-only."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
# Parity on a few hundred real test images keeps the session short; the full 10,000 is the real run's.
TEST_IMAGES = 300
MEASURE_ARGS = ["--test-size", str(TEST_IMAGES), "--calibration-size", "200", "--latency-runs", "20"]
MEASURE_ARGS += ["--throughput-runs", "2"]
REPORT_FILES = {"export_report.json", "export_report.md", "export_accuracy_latency.png", "export_sizes.png"}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_export(repo: Path, *args: str, timeout: float = 1200) -> Run:
    result = subprocess.run(
        [sys.executable, "-m", "export", "--repo", str(repo), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    return Run(result.returncode, result.stdout, result.stderr)


def snapshot(repo: Path) -> dict[str, tuple[int, str]]:
    """Every file but the report (re-measured on each run): mtime and content hash."""
    return {
        str(path.relative_to(repo)): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(repo.rglob("*"))
        if path.is_file() and path.name not in REPORT_FILES
    }


@dataclass(frozen=True)
class Exported:
    repo: Path
    run: Run


@pytest.fixture(scope="session")
def exported(quick_repo_cached: Path, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    repo = tmp_path_factory.mktemp("export") / "models"
    shutil.copytree(quick_repo_cached, repo)
    return Exported(repo, run_export(repo, *MEASURE_ARGS))
