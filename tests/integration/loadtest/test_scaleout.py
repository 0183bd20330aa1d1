"""``python -m loadtest.scaleout --quick``: 3 model servers on 127.0.0.2-4 behind a DNS name (+1 added),
two gateways resolving it, Locust through both; add, drain, kill and routing all pass, and the report
says so. About a minute on 2 cores once the quick models exist."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.procs import ROOT
from loadtest.scaleout import __main__ as runner

pytestmark = pytest.mark.slow


def test_quick_scaleout_run_passes(quick_repo_cached: Path, tmp_path: Path) -> None:
    out = tmp_path / "scaleout"
    command = [
        sys.executable,
        "-m",
        "loadtest.scaleout",
        "--quick",
        "--repo",
        str(quick_repo_cached),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    document = json.loads((out / "report.json").read_text())
    assert document["result"]["failures"] == []
    details = document["details"]
    phases = {phase["name"]: phase for phase in details["phases"]}
    assert list(phases) == ["steady", "after add", "after drain", "after kill"]
    assert phases["steady"]["live"] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert phases["after add"]["live"] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    assert "127.0.0.3" not in phases["after drain"]["live"] and "127.0.0.4" not in phases["after kill"]["live"]
    for phase in phases.values():  # every live member answered calls, counted by itself
        assert all(phase["server_calls"][member] > 0 for member in phase["live"]), phase
    resolve_s = details["sizes"]["resolve_s"]
    assert all(0 < seconds <= resolve_s + 1.0 for seconds in details["first_call_s"].values())
    assert details["drain_exit_code"] == 0
    assert sum(gateway["failed"] for gateway in details["events"]["drain"].values()) == 0
    assert all(gateway["wrong"] == 0 for event in details["events"].values() for gateway in event.values())
    assert details["routing"]["keys_split"] == 0 and details["routing"]["failed_calls"] == 0
    assert set(details["locust_cpu"]) == {"gateway-a", "gateway-b"}
    table = (out / "report.md").read_text()
    assert "**Result: pass.**" in table and "| after kill | 127.0.0.5 |" in table


def test_missing_model_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--quick", "--repo", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "has no model version" in error and "python -m training" in error
