"""deploy/docker-compose.yml against the files it mounts, the export, the gateway config and Prometheus."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from deploy.checks.common import (
    MODELS_MOUNT,
    Problem,
    check_gateway_files,
    check_server_flags,
    dig,
    display,
    gateway_settings,
    host_path,
    image_is_pinned,
    option_value,
    parse_flags,
    split_target,
)

SERVICES = ("tfserving", "modelserver", "gateway", "prometheus", "locust-master", "locust-worker")
UPSTREAMS = ("tfserving", "modelserver")
GATEWAY_HEALTHCHECK_PORT = 8000  # the gateway image's HEALTHCHECK: $TENSORGATE_HTTP_PORT, else 8000
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|\$\$")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$$``, recursively."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, operator, default = match.group(1), match.group(2), match.group(3) or ""
            current = env.get(name)
            if operator == ":-" and not current:
                return default
            if operator == "-" and current is None:
                return default
            return current or ""

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    return value


def _arguments(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(item) for item in value]


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        return dict(str(item).partition("=")[::2] for item in value)
    return {str(key): str(item) for key, item in value.items()}


def _container_ports(service: Mapping[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports") or []:
        if isinstance(port, Mapping):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def _mounts(service: Mapping[str, Any], base: Path) -> tuple[dict[str, Path], list[tuple[int, Path]]]:
    """container target -> host source, and every (index, host source) to check for existence."""
    mounts: dict[str, Path] = {}
    sources = []
    for index, volume in enumerate(service.get("volumes") or []):
        if isinstance(volume, Mapping):
            if volume.get("type", "volume") != "bind":
                continue
            source, target = str(volume["source"]), str(volume["target"])
        else:
            parts = str(volume).split(":")
            if len(parts) < 2 or not parts[0].startswith((".", "/", "~")):
                continue
            source, target = parts[0], parts[1]
        path = (base / Path(source).expanduser()).resolve()
        mounts[target] = path
        sources.append((index, path))
    return mounts, sources


def check_compose(compose_path: Path, env: Mapping[str, str], repo_known: bool = True) -> list[Problem]:
    """``env`` plays the shell's role for ``${...}`` (TENSORGATE_REPO: the exported repository).
    With ``repo_known`` false the models mount and what the export writes are not looked at."""
    file = display(compose_path)
    try:
        document = yaml.safe_load(compose_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        return [Problem(file, "(yaml)", f"does not parse: {error}")]
    services: dict[str, Any] = interpolate(document.get("services") or {}, env)
    problems = [Problem(file, f"services.{name}", "missing") for name in SERVICES if name not in services]
    if problems:
        return problems
    base = compose_path.parent
    mounts = {name: _mounts(service, base) for name, service in services.items()}
    names = {name: name for name in services}
    for name, service in services.items():
        for alias in dig(service, "networks.default.aliases") or []:
            names.setdefault(alias, name)
    for name, (targets, sources) in mounts.items():
        for index, source in sources:
            is_models = targets.get(MODELS_MOUNT) == source
            if (repo_known or not is_models) and not source.exists():
                problems.append(
                    Problem(file, f"services.{name}.volumes[{index}].source", f"{display(source)} does not exist")
                )
    problems += _check_dockerfile_targets(services, base, file)

    tfserving = services["tfserving"]
    if not image_is_pinned(str(tfserving.get("image", ""))) or "-gpu" not in str(tfserving.get("image")):
        problems.append(Problem(file, "services.tfserving.image", "must be tensorflow/serving:<version>-gpu"))
    devices = dig(tfserving, "deploy.resources.reservations.devices") or []
    if not any(device.get("driver") == "nvidia" and "gpu" in (device.get("capabilities") or []) for device in devices):
        problems.append(
            Problem(file, "services.tfserving.deploy.resources.reservations.devices", "no nvidia gpu reservation")
        )

    grpc_ports: dict[str, int] = {}
    rest_ports: dict[str, int] = {}
    metrics_paths: dict[str, str | None] = {}
    for name in UPSTREAMS:
        flags = parse_flags(_arguments(services[name].get("command")))
        found, metrics_paths[name] = check_server_flags(
            flags, mounts[name][0], file, f"services.{name}.command", repo_known
        )
        problems += found
        grpc_ports[name] = int(flags.get("--port", "8500"))
        rest_ports[name] = int(flags.get("--rest_api_port", "0"))
        for port in (grpc_ports[name], rest_ports[name]):
            if port not in _container_ports(services[name]):
                problems.append(Problem(file, f"services.{name}.ports", f"container port {port} is not published"))
    if grpc_ports["tfserving"] != grpc_ports["modelserver"] or rest_ports["tfserving"] != rest_ports["modelserver"]:
        problems.append(Problem(file, "services.modelserver.command", "ports differ from tfserving's"))

    settings, found, where = _gateway(services["gateway"], mounts["gateway"][0], file)
    problems += found
    if settings is None:
        return problems
    service_ports = {name: {grpc_ports.get(name), rest_ports.get(name)} for name in UPSTREAMS}
    service_ports["gateway"] = {settings.http_port, settings.grpc_port}
    for upstream, config in settings.upstreams.items():
        for index, target in enumerate(config.targets):
            host, port = split_target(target)
            key = f"upstreams.{upstream}.targets[{index}]"
            if host not in names or names[host] not in UPSTREAMS:
                problems.append(Problem(where, key, f"{host!r} is not the tfserving or modelserver service"))
            elif port != grpc_ports[names[host]]:
                message = f"port {port} is not {names[host]}'s gRPC --port {grpc_ports[names[host]]}"
                problems.append(Problem(where, key, message))
    problems += check_gateway_files(settings, mounts["gateway"][0], where, repo_known)
    problems += _check_prometheus(services, mounts, names, service_ports, metrics_paths, file, repo_known)
    problems += _check_locust(services, settings, file)
    return problems


def _check_dockerfile_targets(services: Mapping[str, Any], base: Path, file: str) -> list[Problem]:
    problems = []
    for name, service in services.items():
        build = service.get("build")
        if not isinstance(build, Mapping):
            continue
        dockerfile = (base / str(build.get("context", ".")) / str(build.get("dockerfile", "Dockerfile"))).resolve()
        stages = re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text()) if dockerfile.is_file() else []
        if build.get("target") not in stages:
            message = f"target {build.get('target')!r} is not a stage of {display(dockerfile)}"
            problems.append(Problem(file, f"services.{name}.build.target", message))
    return problems


def _gateway(service: Mapping[str, Any], mounts: Mapping[str, Path], file: str) -> tuple[Any, list[Problem], str]:
    """The gateway's settings, its problems, and how to name its config: the file and the service."""
    config = option_value(_arguments(service.get("command")), "--config")
    if config is None:
        return None, [Problem(file, "services.gateway.command", "no --config")], file
    source = host_path(config, mounts)
    if source is None or not source.is_file():
        return None, [Problem(file, "services.gateway.command[--config]", f"{config} is not a mounted file")], file
    where = f"{display(source)} (+ environment of {file} services.gateway)"
    settings, problems = gateway_settings(source.read_text(), _environment(service), where)
    if settings is not None:
        published = _container_ports(service)
        for key, port in (("http_port", settings.http_port), ("grpc_port", settings.grpc_port)):
            if port is not None and port not in published:
                message = f"the gateway's {key} {port} ({display(source)}) is not published"
                problems.append(Problem(file, "services.gateway.ports", message))
        if settings.http_port != GATEWAY_HEALTHCHECK_PORT and "TENSORGATE_HTTP_PORT" not in _environment(service):
            message = f"http_port {settings.http_port} needs TENSORGATE_HTTP_PORT set for the image's HEALTHCHECK"
            problems.append(Problem(file, "services.gateway.environment", message))
    return settings, problems, where


def _check_prometheus(
    services: Mapping[str, Any],
    mounts: Mapping[str, tuple[dict[str, Path], list[tuple[int, Path]]]],
    names: Mapping[str, str],
    service_ports: Mapping[str, set[int | None]],
    metrics_paths: Mapping[str, str | None],
    file: str,
    repo_known: bool,
) -> list[Problem]:
    source = host_path("/etc/prometheus/prometheus.yml", mounts["prometheus"][0])
    if source is None or not source.is_file():
        return [Problem(file, "services.prometheus.volumes", "/etc/prometheus/prometheus.yml is not a mounted file")]
    config = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    problems = []
    scraped = set()
    for job_index, job in enumerate(config.get("scrape_configs") or []):
        for config_index, static in enumerate(job.get("static_configs") or []):
            for target_index, target in enumerate(static.get("targets") or []):
                key = f"scrape_configs[{job_index}].static_configs[{config_index}].targets[{target_index}]"
                host, port = split_target(target)
                service = names.get(host)
                if service is None:
                    problems.append(Problem(display(source), key, f"{host!r} is not a compose service"))
                    continue
                scraped.add(service)
                if port not in service_ports.get(service, set()):
                    problems.append(Problem(display(source), key, f"{service} does not listen on {port}"))
                expected = "/metrics" if service == "gateway" else metrics_paths.get(service)
                path = job.get("metrics_path", "/metrics")
                if (repo_known or service == "gateway") and expected is not None and path != expected:
                    message = f"{path} is not {service}'s metrics path {expected}"
                    problems.append(Problem(display(source), f"scrape_configs[{job_index}].metrics_path", message))
    for service in ("gateway", "tfserving"):
        if service not in scraped:
            problems.append(Problem(display(source), "scrape_configs", f"{service} is not scraped"))
    return problems


def _check_locust(services: Mapping[str, Any], settings: Any, file: str) -> list[Problem]:
    problems = []
    master = _arguments(services["locust-master"].get("command"))
    host = option_value(master, "--host")
    if host is None or split_target(host) != ("gateway", settings.http_port):
        message = f"{host} is not the gateway's http://gateway:{settings.http_port}"
        problems.append(Problem(file, "services.locust-master.command[--host]", message))
    for name in ("locust-master", "locust-worker"):
        grpc_host = _environment(services[name]).get("LOCUST_GRPC_HOST")
        if grpc_host and split_target(grpc_host) != ("gateway", settings.grpc_port):
            message = f"{grpc_host} is not the gateway's gateway:{settings.grpc_port}"
            problems.append(Problem(file, f"services.{name}.environment.LOCUST_GRPC_HOST", message))
    worker = _arguments(services["locust-worker"].get("command"))
    if "--worker" not in worker or option_value(worker, "--master-host") != "locust-master":
        problems.append(Problem(file, "services.locust-worker.command", "needs --worker --master-host locust-master"))
    return problems


def default_env(repo: Path | None) -> dict[str, str]:
    return {"TENSORGATE_REPO": str(repo.resolve())} if repo is not None else {}
