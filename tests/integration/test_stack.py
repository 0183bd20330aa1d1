"""``python -m serving.stack`` (what ``make run`` starts) supervises its servers: the model server killed
with SIGKILL is back and serving within seconds, the stack's log says how it died, and meanwhile the
gateway answers 503 with an error body, never a hang."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import psutil
import pytest

from tests.integration.modelserver.conftest import ROOT, free_port

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/cnn:predict"
BODY = orjson.dumps({"instances": np.zeros((1, 28, 28, 1)).tolist()})


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    log_path: Path
    http: str
    ports: dict[str, int] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def modelserver_pid(self) -> int | None:
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if "serving.modelserver" in " ".join(child.cmdline()):
                    return child.pid
            except psutil.Error:
                continue
        return None


def write_repo(source: Path, repo: Path) -> None:
    """The files `make run` serves (export writes them): cnn, its configs, batching and monitoring."""
    shutil.copytree(source / "cnn", repo / "cnn")
    entry = f'name: "cnn" base_path: "{repo / "cnn"}" model_platform: "tensorflow"'
    config = f"model_config_list {{ config {{ {entry} }} }}\n"
    (repo / "modelserver.config").write_text(config)
    (repo / "models.config").write_text(config)
    (repo / "batching_parameters.txt").write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\nnum_batch_threads { value: 2 }\n"
    )
    monitoring = 'prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n'
    (repo / "monitoring.config").write_text(monitoring)


@pytest.fixture
def stack(quick_repo_cached: Path, tmp_path: Path) -> Iterator[Stack]:
    repo = tmp_path / "models"
    write_repo(quick_repo_cached, repo)
    ports = {name: free_port() for name in ("http", "grpc", "modelserver", "modelserver_rest")}
    log_path = tmp_path / "stack.log"
    command = [sys.executable, "-m", "serving.stack", "--repo", str(repo), "--serve-only"]
    command += ["--http-port", str(ports["http"]), "--grpc-port", str(ports["grpc"])]
    command += ["--modelserver-port", str(ports["modelserver"])]
    command += ["--modelserver-rest-port", str(ports["modelserver_rest"]), "--ready-timeout", "240"]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_ENABLE_ONEDNN_OPTS": "1",
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    running = Stack(process, log_path, f"http://127.0.0.1:{ports['http']}", ports)
    try:
        deadline = time.monotonic() + 300
        while "Ready. Try:" not in running.log():
            assert process.poll() is None, f"the stack exited with {process.returncode}:\n{running.log()[-4000:]}"
            assert time.monotonic() < deadline, running.log()[-4000:]
            time.sleep(0.5)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def test_killed_model_server_is_restarted_and_the_gateway_says_503_meanwhile(stack: Stack) -> None:
    client = httpx.Client(base_url=stack.http, timeout=30)
    assert client.post(PREDICT, content=BODY).status_code == 200
    first = stack.modelserver_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    killed = time.monotonic()
    answers: list[tuple[float, str, int, bytes, float]] = []
    recovered = None
    while time.monotonic() - killed < 120:
        for path in ("/readyz", PREDICT):
            started = time.monotonic()
            answer = client.post(path, content=BODY) if path == PREDICT else client.get(path)
            answers.append((started - killed, path, answer.status_code, answer.content, time.monotonic() - started))
        if answers[-1][2] == 200 and answers[-2][2] == 200:
            recovered = time.monotonic() - killed
            break
        time.sleep(0.1)
    assert recovered is not None, f"not serving 120 s after the kill:\n{stack.log()[-4000:]}"
    outage = [a for a in answers if a[2] != 200]
    assert outage, "the gateway never noticed the model server was gone"
    for at, path, status, content, took in outage:
        assert status == 503, (at, path, status, content)
        assert orjson.loads(content)["error"], content
        assert took < 10, f"{path} took {took:.1f} s at {at:.1f} s after the kill"
    assert any(a[1] == "/readyz" for a in outage) and any(a[1] == PREDICT for a in outage)
    second = stack.modelserver_pid()
    assert second is not None and second != first
    log = stack.log()
    assert re.search(r"the model server \(pid \d+\) killed by signal SIGKILL \(9\)", log), log[-3000:]
    assert "restarting the model server (restart 1)" in log
    said = sorted({f"{path} {content.decode()}" for _, path, _, content, _ in outage})
    print(f"serving again {recovered:.1f} s after SIGKILL; {len(outage)} answers were 503: {said}")
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(60) == 0
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == psutil.STATUS_ZOMBIE
