"""The locustfile's users against a live gateway (in front of the real model server with the quick cnn):
a few seconds of headless Locust each, zero failures, and wrong answers counted apart from failures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest import report, targets
from loadtest.procs import ROOT

pytestmark = pytest.mark.slow
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"


@pytest.fixture(scope="module")
def stack(quick_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, targets.Server]]:
    work = tmp_path_factory.mktemp("loadtest-stack")
    repo, _ = targets.work_repo(quick_repo, Path("/nonexistent/1/model.onnx"), work / "repo", {"cnn"})
    model_server = targets.start_modelserver(repo / "models.config", ["cnn"], work, batching=True, timeout=240)
    try:
        gateway = targets.start_gateway(repo, model_server.grpc, ["cnn"], work, timeout=60)
    except Exception:
        model_server.managed.stop()
        raise
    yield {"modelserver": model_server, "gateway": gateway}
    gateway.managed.stop()
    model_server.managed.stop()


def headless(tmp_path: Path, host: str, user: str, *options: str, seconds: int = 3) -> dict[str, Any]:
    prefix = tmp_path / user
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2", "-r", "2"]
    command += ["-t", f"{seconds}s", "--host", host, "--csv", str(prefix), "--only-summary"]
    command += ["--api-key", targets.API_KEY, *options, user]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answers " in done.stderr  # the summary line: images checked and wrong answers
    return report.read_locust(prefix, 1)


@pytest.mark.parametrize("payload", ["instances", "b64", "multipart", "v2-json", "v2-binary"])
def test_rest_user_records_requests_without_failures(
    stack: dict[str, targets.Server], tmp_path: Path, payload: str
) -> None:
    step = headless(tmp_path, stack["gateway"].rest, "RestUser", "--payload", payload)
    assert step["requests"] > 5
    assert step["failures"] == 0
    assert step["locust"]["requests"] > 0 and step["locust"]["failures"] == 0
    assert step["images_checked"] == step["requests"]
    assert 0 < step["p50_ms"] <= step["p99_ms"] <= step["max_ms"]
    # the quick cnn is right on most images: wrong answers are counted, and few
    assert step["wrong_pct"] < 60


def test_grpc_user_fires_request_events(stack: dict[str, targets.Server], tmp_path: Path) -> None:
    step = headless(tmp_path, stack["gateway"].grpc, "GrpcUser", "--batch", "1")
    assert step["requests"] > 5 and step["failures"] == 0
    stats = (tmp_path / "GrpcUser_stats.csv").read_text()
    assert "grpc,grpc cnn x1," in stats
    assert step["wrong_pct"] < 60


def test_grpc_user_with_the_v2_protocol(stack: dict[str, targets.Server], tmp_path: Path) -> None:
    step = headless(tmp_path, stack["gateway"].grpc, "GrpcUser", "--payload", "v2-grpc", "--batch", "2")
    assert step["requests"] > 5 and step["failures"] == 0
    assert step["images_checked"] == 2 * step["requests"]
    assert "grpc,v2-grpc cnn x2," in (tmp_path / "GrpcUser_stats.csv").read_text()
    assert step["wrong_pct"] < 60


def test_grpc_user_with_batches_against_the_model_server(stack: dict[str, targets.Server], tmp_path: Path) -> None:
    step = headless(tmp_path, stack["modelserver"].grpc, "GrpcUser", "--batch", "16")
    assert step["requests"] > 2 and step["failures"] == 0
    assert step["images_checked"] == 16 * step["requests"]


def test_a_deliberately_wrong_label_counts_as_wrong_not_failed(
    stack: dict[str, targets.Server], tmp_path: Path
) -> None:
    step = headless(tmp_path, stack["gateway"].rest, "RestUser", "--label-shift", "1")
    assert step["requests"] > 5 and step["failures"] == 0
    # expecting label+1 mod 10: the model (right on most images) is now wrong on nearly all of them
    assert step["wrong_pct"] > 80
    saved = json.loads((tmp_path / "RestUser_answers.json").read_text())
    assert saved["answers"]["instances cnn x1"]["wrong"] == step["wrong_answers"] > 0


def test_a_wrong_api_key_is_a_failure(stack: dict[str, targets.Server], tmp_path: Path) -> None:
    prefix = tmp_path / "denied"
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1", "-r", "1", "-t", "2s"]
    command += ["--host", stack["gateway"].rest, "--csv", str(prefix), "--only-summary", "--api-key", "wrong"]
    subprocess.run([*command, "RestUser"], cwd=tmp_path, capture_output=True, timeout=120)
    step = report.read_locust(prefix, 1)
    assert step["failures"] == step["requests"] > 0
    assert "HTTP 401" in " ".join(step["failure_messages"])
