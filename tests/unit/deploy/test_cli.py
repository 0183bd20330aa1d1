"""``python -m deploy.checks``: one line per problem, and an exit status that says whether there were any."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.checks.__main__ import main
from tests.unit.deploy.conftest import needs_locustfile


def test_clean_repository_exits_0(stand_in_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    needs_locustfile()
    assert main(["--repo", str(stand_in_repo)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 problem(s)"


def test_problems_are_printed_and_exit_1(stand_in_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    needs_locustfile()
    (stand_in_repo / "monitoring.config").unlink()
    assert main(["--repo", str(stand_in_repo)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "3 problem(s)"  # tfserving and modelserver in compose, tfserving in k8s
    assert all("--monitoring_config_file]: /models/monitoring.config is " in line for line in lines[:-1])


def test_missing_repository_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--repo", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err
