"""Start ``python -m serving.modelserver`` as a real process on loopback and wait until it serves."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from loadtest.procs import free_port

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    grpc_port: int
    rest_port: int
    log_path: Path

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    args: list[str], log_dir: Path, timeout: float = 120.0, env: dict[str, str] | None = None
) -> RunningServer:
    grpc_port, rest_port = free_port(), free_port()
    log_path = log_dir / f"modelserver-{rest_port}.log"
    command = [
        sys.executable,
        "-m",
        "serving.modelserver",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        *args,
    ]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=environment)
    server = RunningServer(process, grpc_port, rest_port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"model server exited with {process.returncode}:\n{server.log()}")
        log = server.log()
        if "Skipped exporting HTTP/REST API" in log:  # it will never answer REST: say why now, not in 120 s
            server.stop()
            raise RuntimeError(f"model server started without its REST API:\n{log}")
        if "Exporting HTTP/REST API" in log:
            try:
                httpx.get(f"{server.rest}/v1/models/_readiness_probe", timeout=2)
                return server
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"model server did not become ready in {timeout}s:\n{server.log()}")


@pytest.fixture(scope="module")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("modelserver-logs")


@pytest.fixture(scope="module")
def launch(server_logs: Path) -> Iterator[object]:
    """A function starting servers for one test module; all are stopped when the module ends."""
    started: list[RunningServer] = []

    def _launch(args: list[str], env: dict[str, str] | None = None) -> RunningServer:
        server = start_server(args, server_logs, env=env)
        started.append(server)
        return server

    yield _launch
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def contract_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cnn (SavedModel), cnn_dynamic (TFLite) and cnn_onnx (ONNX), versions 1 and 2, built once."""
    out = tmp_path_factory.mktemp("contract-models")
    subprocess.run(
        [sys.executable, "-m", "tests.integration.modelserver.contract_models", str(out), "--versions", "1,2"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.fixture(scope="session")
def cnn_variants(quick_repo_cached: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick cnn and its exported variants (cnn_dynamic, cnn_fp16, cnn_int8, cnn_onnx) with export's
    modelserver.config: every runtime the model server has on a CPU, on a real trained model."""
    repo = tmp_path_factory.mktemp("cnn-variants") / "models"
    shutil.copytree(quick_repo_cached / "cnn", repo / "cnn")
    measure = ["--test-size", "100", "--calibration-size", "100", "--latency-runs", "2", "--throughput-runs", "1"]
    formats = ["--formats", "dynamic", "fp16", "int8", "onnx"]
    subprocess.run(
        [sys.executable, "-m", "export", "--repo", str(repo), "--models", "cnn", *formats, *measure],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=900,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    _serve_every_variant(repo)
    return repo


def _serve_every_variant(repo: Path) -> None:
    """Export leaves a variant out of modelserver.config when its agreement with the SavedModel on the
    sample is under 99% (a quick, bfloat16-trained CNN's int8 variant can miss that by one image of 100).
    These tests need every runtime served, not the accurate ones: add back any variant export wrote."""
    from google.protobuf import text_format

    from export.variants import FORMATS
    from serving import protos

    path = repo / "modelserver.config"
    config = text_format.Parse(path.read_text(), protos.ModelServerConfig())
    served = {model.name for model in config.model_config_list.config}
    for format_name in ("dynamic", "fp16", "int8", "onnx"):
        name = f"cnn_{format_name}"
        if name not in served and (repo / name / "1").is_dir():
            config.model_config_list.config.add(
                name=name, base_path=str(repo / name), model_platform=FORMATS[format_name].platform
            )
    path.write_text(text_format.MessageToString(config))
