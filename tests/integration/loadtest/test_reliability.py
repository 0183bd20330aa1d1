"""``python -m loadtest.reliability --quick``: every check runs against real servers and passes, and the
report has one row per check. Also: the runner's own failure paths (no model, a failing check)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.procs import ROOT
from loadtest.reliability import __main__ as runner
from loadtest.reliability import report
from loadtest.reliability.common import CheckResult

pytestmark = pytest.mark.slow


def test_quick_run_passes_every_check(quick_repo_cached: Path, tmp_path: Path) -> None:
    out = tmp_path / "reliability"
    command = [sys.executable, "-m", "loadtest.reliability", "--quick", "--repo", str(quick_repo_cached)]
    done = subprocess.run([*command, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    document = json.loads((out / "report.json").read_text())
    rows = {row["name"]: row for row in document["checks"]}
    assert len(rows) == len(runner.CHECKS), sorted(rows)
    for name, row in rows.items():
        assert row["failures"] == [], (name, row["failures"])
        assert not row["skipped"], (name, row["skipped"])
        assert row["figures"], f"{name} recorded no figures"
    table = (out / "report.md").read_text()
    assert table.count("| pass |") == len(runner.CHECKS), table


def test_missing_model_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--quick", "--repo", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "has no model version" in error and "python -m training" in error


def test_unknown_check_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--checks", "fuzz,teleport"])
    assert exit_info.value.code == 2
    assert "teleport" in capsys.readouterr().err


def test_a_failed_or_crashed_check_fails_the_run(
    quick_repo_cached: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(ctx: object) -> CheckResult:
        return CheckResult("auth", what="x", failures=["route /v1/models answered 200 without a key"])

    def crashing(ctx: object) -> CheckResult:
        raise RuntimeError("boom")

    import loadtest.reliability.auth as auth_check
    import loadtest.reliability.hostile as hostile_check

    monkeypatch.setattr(auth_check, "run", failing)
    monkeypatch.setattr(hostile_check, "run", crashing)
    out = tmp_path / "out"
    assert (
        runner.main(["--quick", "--repo", str(quick_repo_cached), "--checks", "auth,hostile", "--out", str(out)]) == 1
    )
    table = (out / "report.md").read_text()
    assert "FAIL (1)" in table and "answered 200 without a key" in table and "crashed: RuntimeError('boom')" in table
    assert (out / "hostile-traceback.txt").is_file()


def test_report_marks_skips_and_escapes_cells(tmp_path: Path) -> None:
    rows = [
        CheckResult("soak", skipped="needs 10 minutes"),
        CheckResult("fuzz", what="a | b", figures={"cases": 1200, "rate": 35.123456, "per_op": {"x": 1}}),
    ]
    header = {"started": "now", "quick": True, "machine": {}, "repo": "m", "command": "c", "seconds": 1.0}
    text = report.write(tmp_path, rows, header).read_text()
    assert "| soak | skipped |" in text and "skipped: needs 10 minutes" in text
    assert "a \\| b" in text and "cases: 1200; rate: 35.1" in text and "per_op" not in text
