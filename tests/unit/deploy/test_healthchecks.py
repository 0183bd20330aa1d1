"""The images' HEALTHCHECK commands, run here as Docker would run them (with this venv's python)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from deploy.checks.common import ROOT
from loadtest.procs import free_port

pytest.importorskip("dockerfile", reason="pip install dockerfile (buildkit's Dockerfile parser; dev extra)")

from deploy.checks.dockerfile import parse_stages

pytestmark = pytest.mark.slow  # starts processes


def _healthcheck(target: str) -> list[str]:
    stage = next(stage for stage in parse_stages(ROOT / "Dockerfile") if stage.name == target)
    command = next(command for command in stage.commands if command.cmd == "HEALTHCHECK")
    assert command.json and command.value[0] == "CMD"
    arguments = list(command.value[1:])
    assert arguments[0] == "python"
    return [sys.executable, *arguments[1:]]


def _run(command: list[str], env: dict[str, str] | None = None) -> int:
    return subprocess.run(command, capture_output=True, env={**os.environ, **(env or {})}, timeout=30).returncode


def test_gateway_healthcheck_passes_on_a_live_gateway_and_fails_without(tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "serving.gateway", "--port", str(http_port), "--grpc-port", str(grpc_port)]
    command += ["--repo", str(tmp_path), "--upstream", f"127.0.0.1:{free_port()}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    check = _healthcheck("gateway")
    env = {"TENSORGATE_HTTP_PORT": str(http_port)}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1)
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "the gateway did not answer /healthz within 60 s"
                time.sleep(0.2)
        assert _run(check, env) == 0
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert _run(check, env) != 0


def test_modelserver_healthcheck_follows_grpc_health() -> None:
    port = free_port()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    check = [argument.replace("127.0.0.1:8500", f"127.0.0.1:{port}") for argument in _healthcheck("modelserver")]
    assert check != _healthcheck("modelserver")
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert _run(check) == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert _run(check) == 1
    finally:
        server.stop(None)
    assert _run(check) != 0
