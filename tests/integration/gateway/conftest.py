"""Real processes on loopback: fake TF Serving upstreams, the model server, and the gateway."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadtest.procs import free_port

ROOT = Path(__file__).resolve().parents[3]


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class Proc:
    """A child process with a log file; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class FakeUpstream(Proc):
    def __init__(self, tmp: Path, models: str = "cnn,lstm,transformer", **options: Any) -> None:
        self.port = free_port()
        self.calls = tmp / f"calls-{self.port}.log"
        args = [sys.executable, "-m", "tests.integration.gateway.fake_upstream", "--port", str(self.port)]
        args += ["--models", models, "--log", str(self.calls)]
        for name, value in options.get("shift", {}).items():
            args += ["--shift", f"{name}={value}"]
        for name, value in options.get("delay", {}).items():
            args += ["--delay", f"{name}={value}"]
        for name, value in options.get("max_batch", {}).items():
            args += ["--max-batch", f"{name}={value}"]
        super().__init__(args, tmp / f"fake-{self.port}.out")
        self.wait()

    def wait(self) -> None:
        assert self.process is not None
        _wait_port(self.port, self.process)

    def restart(self) -> None:
        self.start()
        self.wait()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call_lines(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


class Gateway(Proc):
    def __init__(self, tmp: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.grpc_port = free_port()
        config = {"host": "127.0.0.1", "http_port": self.port, "grpc_port": self.grpc_port, **config}
        path = tmp / f"gateway-{self.port}.yaml"
        path.write_text(yaml.safe_dump(config))
        super().__init__(
            [sys.executable, "-m", "serving.gateway", "--config", str(path)], tmp / f"gw-{self.port}.out", env
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)
        assert self.process is not None
        _wait_port(self.port, self.process)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.get("/readyz").status_code == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(f"gateway not ready: {self.client.get('/readyz').text}\n{self.log()[-3000:]}")

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.client.get("/metrics").text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            head, _, value = line.rpartition(" ")
            if all(f'{key}="{val}"' in head for key, val in labels.items()):
                total += float(value)
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        self.client.close()
        return super().stop(sig, timeout)


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


def image_instances(value: float, batch: int = 1) -> dict[str, Any]:
    return {"instances": [[[[value]] * 28] * 28] * batch}
