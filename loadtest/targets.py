"""The systems under test: what each target sends, and how its servers are started and checked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtest.procs import ROOT, Managed, free_port

API_KEY = "loadtest-key"  # the gateway runs with API keys on: every feature enabled, as in production


@dataclass(frozen=True)
class Target:
    name: str
    server: str  # naive | handmade | peer | modelserver | gateway
    protocol: str = "rest"  # rest | grpc
    servable: str = "cnn"
    payload: str = "instances"  # instances | b64 | multipart | v2-json | v2-binary (REST); v2-grpc (gRPC)
    batch: int = 1
    max_users: int = 0  # 0: every step; batched targets stop at a few users (2 cores)
    group: str = "gateway"

    @property
    def user_class(self) -> str:
        return "GrpcUser" if self.protocol == "grpc" else "RestUser"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("naive", "naive", group="baseline"),
        Target("handmade", "handmade", group="baseline"),
        Target("peer", "peer", group="baseline"),
        Target("modelserver-rest", "modelserver", group="modelserver"),
        Target("modelserver-grpc", "modelserver", "grpc", group="modelserver"),
        Target("gateway-rest", "gateway"),
        Target("gateway-rest-png", "gateway", payload="multipart"),
        Target("gateway-grpc", "gateway", "grpc"),
        Target("gateway-v2-rest", "gateway", payload="v2-json", group="v2"),
        Target("gateway-v2-binary", "gateway", payload="v2-binary", group="v2"),
        Target("gateway-v2-grpc", "gateway", "grpc", payload="v2-grpc", group="v2"),
        Target("gateway-rest-onnx", "gateway", servable="cnn_onnx", group="variant"),
        Target("gateway-rest-int8", "gateway", servable="cnn_int8", group="variant"),
        Target("gateway-rest-ensemble", "gateway", servable="ensemble", group="ensemble"),
        Target("gateway-rest-vote", "gateway", servable="vote", group="ensemble"),
        Target("gateway-grpc-batch64", "gateway", "grpc", batch=64, max_users=4, group="batch"),
    )
}
CEILING = "inprocess-batch64"  # the runtime called in-process at batch 64 (not a Locust target)
GATEWAY_CPU = "gateway-cpu"  # the gateway's CPU per request against the fake upstream (loadtest.gateway_cpu)
ALL_NAMES = (*TARGETS, CEILING, GATEWAY_CPU)
ENSEMBLE_MEMBERS = ("cnn", "lstm", "transformer")


def latest(model_dir: Path) -> Path:
    versions = [p for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"{model_dir}: no version directories")
    return max(versions, key=lambda p: int(p.name))


def onnx_model(repo: Path, cache: Path, log: Path) -> Path:
    """``<repo>/cnn_onnx/<v>/model.onnx`` from the export if present, else tf2onnx's conversion of
    ``<repo>/cnn/<v>``, cached by the SavedModel's bytes (so one conversion serves every run)."""
    exported = repo / "cnn_onnx"
    if exported.is_dir():
        return latest(exported) / "model.onnx"
    source = latest(repo / "cnn")
    target = cache / "cnn_onnx" / _fingerprint(source) / "1" / "model.onnx"
    if not target.is_file():
        staging = target.with_suffix(".partial")
        staging.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(source)]
        command += ["--signature_def", "serving_default", "--output", str(staging), "--opset", "17"]
        with log.open("ab") as stream:
            subprocess.run(command, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT, check=True)
        staging.rename(target)
    return target


def _fingerprint(version_dir: Path) -> str:
    import hashlib

    digest = hashlib.sha256((version_dir / "saved_model.pb").read_bytes())
    for variables in sorted((version_dir / "variables").glob("*")):
        digest.update(variables.read_bytes())
    return digest.hexdigest()[:16]


def int8_model(repo: Path, cache: Path, log: Path) -> Path:
    """``<repo>/cnn_int8`` from the export if present, else ``python -m export --formats int8`` run on a
    cached copy of ``<repo>/cnn`` (never writing into ``repo``); returns the servable's base path."""
    if (repo / "cnn_int8").is_dir():
        return repo / "cnn_int8"
    source = latest(repo / "cnn")
    work = cache / "cnn_int8" / _fingerprint(source)
    if not (work / "cnn_int8").is_dir():
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work / "cnn" / source.name)
        command = [sys.executable, "-m", "export", "--repo", str(work), "--models", "cnn", "--formats", "int8"]
        command += ["--test-size", "200", "--calibration-size", "200", "--latency-runs", "5", "--throughput-runs", "2"]
        with log.open("ab") as stream:
            subprocess.run(command, cwd=ROOT, stdout=stream, stderr=subprocess.STDOUT, check=False, timeout=900)
        if not (work / "cnn_int8").is_dir():
            raise FileNotFoundError(f"python -m export wrote no cnn_int8 (see {log})")
    return work / "cnn_int8"


def work_repo(
    repo: Path, onnx: Path, work: Path, servables: set[str], int8: Path | None = None
) -> tuple[Path, dict[str, str]]:
    """A repository of links to the served models plus its ``models.config``; returns it and the
    platform of each servable."""
    work.mkdir(parents=True, exist_ok=True)
    platforms: dict[str, str] = {}
    for name in sorted(servables):
        link = work / name
        if name == "cnn_onnx":
            source, platform = onnx.parent.parent, "onnx"
        elif name == "cnn_int8" and int8 is not None:
            source, platform = int8, "tflite"
        elif name.endswith("_int8") or name.endswith("_fp16") or name.endswith("_dynamic"):
            source, platform = repo / name, "tflite"
        else:
            source, platform = repo / name, "tensorflow"
        if not source.is_dir():
            continue
        if link.is_symlink() or link.exists():
            link.unlink() if link.is_symlink() else shutil.rmtree(link)
        link.symlink_to(source.resolve(), target_is_directory=True)
        platforms[name] = platform
    lines = ["model_config_list {"]
    for name, platform in platforms.items():
        lines.append(f'  config {{ name: "{name}" base_path: "{work / name}" model_platform: "{platform}" }}')
    (work / "models.config").write_text("\n".join([*lines, "}"]) + "\n")
    return work, platforms


@dataclass
class Server:
    managed: Managed
    rest: str  # base URL
    grpc: str = ""  # host:port


def start_baseline(kind: str, repo: Path, onnx: Path, logs: Path, timeout: float) -> Server:
    port = free_port()
    args = [sys.executable, "-m", f"loadtest.baselines.{kind}", "--port", str(port)]
    if kind == "naive":
        args += ["--model", str(latest(repo / "cnn") / "assets.extra" / "keras_model.keras")]
    else:
        args += ["--onnx", str(onnx)]
    managed = Managed(kind, args, logs / f"{kind}.log", {"CUDA_VISIBLE_DEVICES": ""})
    url = f"http://127.0.0.1:{port}"
    health = "/health" if kind == "peer" else "/healthz"
    managed.wait_ready(lambda: httpx.get(url + health, timeout=2).status_code == 200, timeout)
    return Server(managed, url)


def start_modelserver(
    config: Path, servables: list[str], logs: Path, batching: bool, timeout: float, flags: list[str] | None = None
) -> Server:
    """The embedded model server on two free ports; ``flags`` are added to its command line as given."""
    grpc_port, rest_port = free_port(), free_port()
    args = [sys.executable, "-m", "serving.modelserver", f"--port={grpc_port}", f"--rest_api_port={rest_port}"]
    args.append(f"--model_config_file={config}")
    if batching:
        parameters = config.with_name("batching.config")
        parameters.write_text(
            "max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
            "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 2 }\n"
        )
        args += ["--enable_batching", f"--batching_parameters_file={parameters}"]
    args += flags or []
    managed = Managed("modelserver", args, logs / "modelserver.log", {"CUDA_VISIBLE_DEVICES": ""})
    url = f"http://127.0.0.1:{rest_port}"

    def ready() -> bool:
        return all(httpx.get(f"{url}/v1/models/{name}", timeout=2).status_code == 200 for name in servables)

    managed.wait_ready(ready, timeout)
    return Server(managed, url, f"127.0.0.1:{grpc_port}")


def start_gateway(
    repo: Path, upstream: str, servables: list[str], logs: Path, timeout: float, extra: dict[str, Any] | None = None
) -> Server:
    """The gateway in front of ``upstream`` with API keys on; ``extra`` adds or replaces config keys."""
    port, grpc_port = free_port(), free_port()
    config = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "repo": str(repo),
        "upstreams": {"default": {"targets": [upstream]}},
        "servables": dict.fromkeys(servables, "default"),
        "api_keys": [API_KEY],
        "log_level": "info",
    }
    if all(member in servables for member in ENSEMBLE_MEMBERS):
        config["ensembles"] = {"vote": {"members": list(ENSEMBLE_MEMBERS), "voting": "soft"}}
    config.update(extra or {})
    path = logs / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    managed = Managed("gateway", [sys.executable, "-m", "serving.gateway", "--config", str(path)], logs / "gateway.log")
    url = f"http://127.0.0.1:{port}"
    managed.wait_ready(lambda: httpx.get(url + "/readyz", timeout=2).status_code == 200, timeout)
    return Server(managed, url, f"127.0.0.1:{grpc_port}")
