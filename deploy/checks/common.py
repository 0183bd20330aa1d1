"""What the compose and Kubernetes checks share: problems, flags, the exported repository, the gateway config."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MODELS_MOUNT = "/models"
# The flags TF Serving (and our model server) must be started with, and those that name a file.
REQUIRED_SERVER_FLAGS = (
    "--port",
    "--rest_api_port",
    "--model_config_file",
    "--enable_batching",
    "--batching_parameters_file",
    "--monitoring_config_file",
    "--file_system_poll_wait_seconds",
)
FILE_FLAGS = ("--model_config_file", "--batching_parameters_file", "--monitoring_config_file")
TF_PACKAGES = ("tensorflow", "tensorflow-serving-api", "keras", "tf2onnx", "tf-keras", "tensorflow-cpu")


@dataclass(frozen=True)
class Problem:
    """One finding: the file, the key inside it (dotted path), and what is wrong."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}"


def display(path: Path) -> str:
    """A path relative to the repository root where it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_yaml_documents(path: Path) -> list[Any]:
    return [document for document in yaml.safe_load_all(path.read_text(encoding="utf-8")) if document is not None]


def dig(data: Any, dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; None where any step is missing."""
    for part in dotted.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return None
        data = data[part]
    return data


def parse_flags(arguments: Sequence[str]) -> dict[str, str]:
    """``--name=value`` (TF's syntax) and bare ``--name`` (booleans, value "true")."""
    flags: dict[str, str] = {}
    for argument in arguments:
        name, equals, value = str(argument).partition("=")
        if name.startswith("--"):
            flags[name] = value if equals else "true"
    return flags


def option_value(arguments: Sequence[str], name: str) -> str | None:
    """The value after ``name`` (``--host URL``) or in ``name=value``."""
    items = [str(argument) for argument in arguments]
    for index, argument in enumerate(items):
        if argument == name and index + 1 < len(items):
            return items[index + 1]
        if argument.startswith(name + "="):
            return argument.partition("=")[2]
    return None


def split_target(target: str) -> tuple[str, int]:
    """``host:port``, ``dns:///name:port`` (the gateway's) or ``http://host:port/...`` -> (host, port)."""
    if target.startswith("dns:"):
        from serving.gateway.discovery import parse_target

        spec = parse_target(target)
        return spec.host, spec.port
    address = re.sub(r"^[a-z]+://", "", target).split("/", 1)[0]
    host, _, port = address.rpartition(":")
    return host, int(port)


def image_is_pinned(image: str) -> bool:
    """A digest, or a tag with a version number in it (not ``latest``, not a bare name)."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(character.isdigit() for character in tag)


@contextlib.contextmanager
def _gateway_environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {key: value for key, value in os.environ.items() if key.startswith("TENSORGATE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update({key: value for key, value in env.items() if key.startswith("TENSORGATE_")})
    try:
        yield
    finally:
        for key in [key for key in os.environ if key.startswith("TENSORGATE_")]:
            del os.environ[key]
        os.environ.update(saved)


def gateway_settings(text: str, env: Mapping[str, str], file: str) -> tuple[Any, list[Problem]]:
    """The gateway's own Settings from its YAML and TENSORGATE_* variables, as the process reads them."""
    from serving.gateway.config import ConfigError, load_settings

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        return None, [Problem(file, "(yaml)", f"does not parse: {error}")]
    if not isinstance(data, dict):
        return None, [Problem(file, "(top level)", "must be a mapping")]
    with _gateway_environment(env):
        try:
            return load_settings(None, **data), []
        except ConfigError as error:
            return None, [Problem(file, str(error).split(":", 1)[0], f"invalid gateway config: {error}")]


def check_gateway_files(settings: Any, mounts: Mapping[str, Path], where: str, repo_known: bool) -> list[Problem]:
    """The gateway's repo and model_config_file are mounted (and exist once the repository is known)."""
    problems = []
    paths = {"repo": settings.repo, "model_config_file": settings.model_config_file}
    if settings.model_config_file is None and settings.repo is not None:
        paths["model_config_file"] = settings.repo / "models.config"
    for key, path in paths.items():
        if path is None:
            continue
        source = host_path(str(path), mounts)
        if source is None:
            problems.append(Problem(where, key, f"{path} is not under a mounted volume"))
        elif repo_known and not source.exists():
            problems.append(Problem(where, key, f"{path} is {display(source)}, which does not exist"))
    return problems


def host_path(container_path: str, mounts: Mapping[str, Path]) -> Path | None:
    """The host (or repository) path behind a container path, through the longest matching mount."""
    best = None
    for target in mounts:
        if (container_path == target or container_path.startswith(target.rstrip("/") + "/")) and (
            best is None or len(target) > len(best)
        ):
            best = target
    if best is None:
        return None
    return mounts[best] / container_path[len(best) :].lstrip("/")


def check_server_flags(
    flags: Mapping[str, str], mounts: Mapping[str, Path], file: str, key: str, repo_known: bool
) -> tuple[list[Problem], str | None]:
    """Flags present; every file flag under a mount and, where the repository is known, present in it
    and parseable with TF Serving's descriptors. Returns the problems and the Prometheus path."""
    from serving.modelserver import config as server_config

    problems = [Problem(file, f"{key}[{flag}]", "missing") for flag in REQUIRED_SERVER_FLAGS if flag not in flags]
    metrics_path: str | None = None
    for flag in FILE_FLAGS:
        if flag not in flags:
            continue
        source = host_path(flags[flag], mounts)
        if source is None:
            problems.append(Problem(file, f"{key}[{flag}]", f"{flags[flag]} is not under any mounted volume"))
            continue
        if not repo_known:
            continue
        if not source.is_file():
            problems.append(
                Problem(file, f"{key}[{flag}]", f"{flags[flag]} is {display(source)}, which does not exist")
            )
            continue
        try:
            if flag == "--model_config_file":
                config = server_config.read_model_server_config(source)
                problems += _check_base_paths(config, mounts, display(source))
            elif flag == "--batching_parameters_file":
                server_config.read_batching_parameters(source)
            else:
                monitoring = server_config.read_monitoring_config(source)
                if not monitoring.prometheus_enabled:
                    problems.append(Problem(display(source), "prometheus_config.enable", "Prometheus is not enabled"))
                metrics_path = monitoring.prometheus_path
        except server_config.ConfigError as error:
            problems.append(Problem(display(source), "(text format)", str(error)))
    return problems, metrics_path


def _check_base_paths(config: Any, mounts: Mapping[str, Path], file: str) -> list[Problem]:
    problems = []
    for model in config.model_config_list.config:
        key = f"model_config_list.config[{model.name}].base_path"
        source = host_path(model.base_path, mounts)
        if source is None:
            problems.append(Problem(file, key, f"{model.base_path} is not under a path the server mounts"))
        elif not source.is_dir():
            problems.append(Problem(file, key, f"{model.base_path} is {display(source)}, which does not exist"))
    return problems
