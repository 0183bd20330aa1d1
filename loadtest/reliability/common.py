"""What every reliability check shares: its result row, and a context that starts real servers."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtest import procs
from loadtest.procs import Managed, free_port

API_KEY = "reliability-key"
SERVABLE = "cnn"  # the model every check sends to (a TF SavedModel: the production format)
# export's CPU variants (every runtime but TensorRT), by name suffix
VARIANT_PLATFORMS = {"dynamic": "tflite", "fp16": "tflite", "int8": "tflite", "onnx": "onnx"}


def _newest(servable: Path) -> str:
    """The newest numbered version directory's name, or "" when there is none."""
    if not servable.is_dir():
        return ""
    return max((p.name for p in servable.iterdir() if p.name.isdigit()), key=int, default="")


@dataclass
class CheckResult:
    """One row of the report. ``failures`` must be empty for the check to pass."""

    name: str
    what: str = ""
    amount: str = ""
    failures: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str = ""  # a reason, when the check could not run here

    @property
    def passed(self) -> bool:
        return not self.failures and not self.skipped

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def expect(self, condition: bool, message: str) -> bool:
        if not condition:
            self.failures.append(message)
        return condition


@dataclass
class Server:
    managed: Managed
    rest: str  # base URL, http://127.0.0.1:PORT
    grpc: str  # 127.0.0.1:PORT


class Context:
    """Where a run keeps its files, and how checks start servers.

    Every server is a real process (``python -m serving.modelserver`` / ``python -m serving.gateway``)
    on free loopback ports, logging under ``logs/``. ``stop_all`` ends whatever a check left running.
    """

    def __init__(self, repo: Path, out: Path, quick: bool) -> None:
        self.source_repo, self.out, self.quick = repo, out, quick
        self.logs = out / "logs"
        self.work = out / "work"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self._started: list[Managed] = []
        self._serial = 0

    def log_path(self, name: str) -> Path:
        self._serial += 1
        return self.logs / f"{self._serial:02d}-{name}.log"

    def model_repo(self, name: str, servables: tuple[str, ...] = (SERVABLE,)) -> Path:
        """A private copy of the newest version of each servable, as version 1, plus its models.config.

        A copy (not links) so that checks can add, corrupt and remove versions without touching the
        source repository.
        """
        repo = self.work / name
        shutil.rmtree(repo, ignore_errors=True)
        lines = ["model_config_list {"]
        for servable in servables:
            versions = sorted(
                (int(p.name) for p in (self.source_repo / servable).iterdir() if p.name.isdigit()),
            )
            if not versions:
                raise FileNotFoundError(f"{self.source_repo / servable} has no numbered version")
            shutil.copytree(self.source_repo / servable / str(versions[-1]), repo / servable / "1")
            base = repo / servable
            lines.append(f'  config {{ name: "{servable}" base_path: "{base}" model_platform: "tensorflow" }}')
        (repo / "models.config").write_text("\n".join([*lines, "}"]) + "\n")
        return repo

    def runtime_repo(self, name: str) -> tuple[Path, dict[str, str]]:
        """Every servable of the source repository, newest version as 1: the SavedModels and the TFLite /
        ONNX variants export made of them (``cnn_dynamic``...), so every runtime the repository uses.
        Nothing is exported here (the quick test repository has SavedModels only; every runtime is
        covered by ``tests/integration/modelserver/test_input_checks.py``). Returns the repository and
        its servables with their model_platform."""
        repo = self.work / name
        shutil.rmtree(repo, ignore_errors=True)
        servables: dict[str, str] = {}
        for source in sorted(p for p in self.source_repo.iterdir() if _newest(p)):
            variant = source.name.rsplit("_", 1)[-1]
            if (source / _newest(source) / "saved_model.pb").is_file():
                servables[source.name] = "tensorflow"
            elif "_" in source.name and variant in VARIANT_PLATFORMS:
                servables[source.name] = VARIANT_PLATFORMS[variant]
            else:
                continue
            shutil.copytree(source / _newest(source), repo / source.name / "1")
        lines = ["model_config_list {"]
        for servable, platform in servables.items():
            lines.append(
                f'  config {{ name: "{servable}" base_path: "{repo / servable}" model_platform: "{platform}" }}'
            )
        (repo / "models.config").write_text("\n".join([*lines, "}"]) + "\n")
        return repo, servables

    def start_modelserver(
        self,
        repo: Path,
        name: str = "modelserver",
        extra_args: tuple[str, ...] = (),
        ports: tuple[int, int] | None = None,
        timeout: float = 180.0,
        wait: bool = True,
        env: dict[str, str] | None = None,
    ) -> Server:
        """``ports`` = (gRPC, REST), to restart a server where it was; default: free ports. ``env`` adds
        to its environment (``TF_ENABLE_ONEDNN_OPTS``, for one)."""
        grpc_port, rest_port = ports or (free_port(), free_port())
        args = [sys.executable, "-m", "serving.modelserver", f"--port={grpc_port}", f"--rest_api_port={rest_port}"]
        args += [f"--model_config_file={repo / 'models.config'}", "--file_system_poll_wait_seconds=1", *extra_args]
        managed = Managed(name, args, self.log_path(name), {"CUDA_VISIBLE_DEVICES": "", **(env or {})})
        self._started.append(managed)
        server = Server(managed, f"http://127.0.0.1:{rest_port}", f"127.0.0.1:{grpc_port}")
        if wait:
            servables = [p.name for p in repo.iterdir() if p.is_dir()]
            managed.wait_ready(lambda: all(self._available(server, s) for s in servables), timeout)
        return server

    @staticmethod
    def _available(server: Server, servable: str) -> bool:
        answer = httpx.get(f"{server.rest}/v1/models/{servable}", timeout=2)
        states = [v.get("state") for v in answer.json().get("model_version_status", [])]
        return answer.status_code == 200 and "AVAILABLE" in states

    def start_gateway(
        self,
        repo: Path,
        upstream_targets: list[str],
        name: str = "gateway",
        api_keys: list[str] | None = None,
        overrides: dict[str, Any] | None = None,
        timeout: float = 120.0,
        wait_ready: bool = True,
    ) -> Server:
        """A gateway in front of ``upstream_targets`` serving what ``repo/models.config`` names.

        API keys default to ``[API_KEY]`` (on, as in production); ``overrides`` are merged into the
        top level of the gateway's YAML config.
        """
        port, grpc_port = free_port(), free_port()
        config: dict[str, Any] = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": grpc_port,
            "repo": str(repo),
            "upstreams": {"default": {"targets": upstream_targets}},
            "api_keys": [API_KEY] if api_keys is None else api_keys,
            "log_level": "warning",
            **(overrides or {}),
        }
        path = self.work / f"{name}-{port}.yaml"
        path.write_text(yaml.safe_dump(config))
        managed = Managed(name, [sys.executable, "-m", "serving.gateway", "--config", str(path)], self.log_path(name))
        self._started.append(managed)
        server = Server(managed, f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}")
        check: Callable[[], bool] = (
            (lambda: httpx.get(server.rest + "/readyz", timeout=2).status_code == 200)
            if wait_ready
            else (lambda: httpx.get(server.rest + "/healthz", timeout=2).status_code == 200)
        )
        managed.wait_ready(check, timeout)
        return server

    def stop_all(self) -> None:
        for managed in reversed(self._started):
            managed.stop(grace=5.0)
        self._started.clear()


@contextmanager
def timed(result: CheckResult) -> Iterator[CheckResult]:
    started = time.monotonic()
    try:
        yield result
    finally:
        result.seconds = time.monotonic() - started


__all__ = ["API_KEY", "SERVABLE", "CheckResult", "Context", "Server", "procs", "timed"]
