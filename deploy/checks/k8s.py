"""deploy/k8s/: required fields per kind, and the names, labels, ports and files that link the manifests."""

from __future__ import annotations

import re
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

REQUIRED = {
    "Deployment": ("spec.selector.matchLabels", "spec.template.metadata.labels", "spec.template.spec.containers"),
    "Job": ("spec.template.spec.containers", "spec.template.spec.restartPolicy"),
    "Service": ("spec.ports", "spec.selector"),
    "HorizontalPodAutoscaler": ("spec.scaleTargetRef.name", "spec.maxReplicas", "spec.metrics"),
    "PodDisruptionBudget": ("spec.selector.matchLabels",),
    "PersistentVolumeClaim": ("spec.accessModes", "spec.resources.requests.storage"),
    "ConfigMap": ("data",),
    "Namespace": (),
}
EXPECTED = {
    ("Deployment", "tfserving"),
    ("Service", "tfserving"),
    ("HorizontalPodAutoscaler", "tfserving"),
    ("PodDisruptionBudget", "tfserving"),
    ("Deployment", "gateway"),
    ("Service", "gateway"),
    ("HorizontalPodAutoscaler", "gateway"),
    ("PodDisruptionBudget", "gateway"),
    ("Deployment", "locust-master"),
    ("Service", "locust-master"),
    ("Deployment", "locust-worker"),
}


class Manifests:
    """Every object in the folder, with the file it came from."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.objects: list[tuple[str, int, dict[str, Any]]] = []
        self.problems: list[Problem] = []
        for path in sorted(directory.glob("*.yaml")):
            if path.name == "kustomization.yaml":
                continue
            try:
                documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            except yaml.YAMLError as error:
                self.problems.append(Problem(display(path), "(yaml)", f"does not parse: {error}"))
                continue
            for index, document in enumerate(documents):
                if document is not None:
                    self.objects.append((display(path), index, document))

    def find(self, kind: str, name: str) -> tuple[str, dict[str, Any]] | None:
        for file, _, document in self.objects:
            if document.get("kind") == kind and dig(document, "metadata.name") == name:
                return file, document
        return None

    def of_kind(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(file, document) for file, _, document in self.objects if document.get("kind") == kind]

    def selected(self, selector: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
        """Deployments whose pod labels carry every label of the selector."""
        return [
            (file, document)
            for file, document in self.of_kind("Deployment")
            if selector and selector.items() <= (dig(document, "spec.template.metadata.labels") or {}).items()
        ]


def _containers(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = dig(document, "spec.template.spec") or {}
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def _port_names(document: Mapping[str, Any]) -> dict[str | int, int]:
    """Named and numbered container ports of a workload -> number."""
    ports: dict[str | int, int] = {}
    for container in _containers(document):
        for port in container.get("ports") or []:
            ports[int(port["containerPort"])] = int(port["containerPort"])
            if "name" in port:
                ports[str(port["name"])] = int(port["containerPort"])
    return ports


def check_k8s(directory: Path, repo: Path | None = None) -> list[Problem]:
    """With ``repo`` (an exported repository standing for the volume), the files TF Serving is started
    with are looked for in it and parsed."""
    manifests = Manifests(directory)
    problems = list(manifests.problems)
    problems += _check_kustomization(directory, manifests)
    for file, index, document in manifests.objects:
        kind, name = document.get("kind"), dig(document, "metadata.name")
        where = f"{kind}/{name}" if name else f"document {index}"
        for field in ("apiVersion", "kind", "metadata.name"):
            if dig(document, field) is None:
                problems.append(Problem(file, f"{where}.{field}", "missing"))
        if kind not in REQUIRED:
            problems.append(Problem(file, f"{where}.kind", f"unexpected kind {kind!r}"))
            continue
        problems += [Problem(file, f"{where}.{f}", "missing") for f in REQUIRED[kind] if dig(document, f) is None]
    if problems:
        return problems
    for kind, name in sorted(EXPECTED):
        if manifests.find(kind, name) is None:
            problems.append(Problem(display(directory), f"{kind}/{name}", "missing"))
    for file, document in manifests.of_kind("Deployment") + manifests.of_kind("Job"):
        problems += _check_workload(file, document, manifests)
    for file, document in manifests.of_kind("Service"):
        problems += _check_service(file, document, manifests)
    for file, document in manifests.of_kind("HorizontalPodAutoscaler"):
        target = dig(document, "spec.scaleTargetRef.name")
        if manifests.find("Deployment", target) is None:
            problems.append(
                Problem(file, "HorizontalPodAutoscaler.spec.scaleTargetRef.name", f"no Deployment {target}")
            )
        if int(document["spec"].get("minReplicas", 1)) > int(document["spec"]["maxReplicas"]):
            problems.append(Problem(file, "HorizontalPodAutoscaler.spec.minReplicas", "exceeds maxReplicas"))
    for file, document in manifests.of_kind("PodDisruptionBudget"):
        if not manifests.selected(dig(document, "spec.selector.matchLabels") or {}):
            problems.append(Problem(file, "PodDisruptionBudget.spec.selector", "selects no Deployment's pods"))
    if problems:
        return problems
    problems += _check_tfserving(manifests, repo)
    problems += _check_export_job(manifests)
    problems += _check_gateway(manifests, repo)
    problems += _check_locust(manifests)
    if not problems:
        from deploy.checks.k8s_scaling import check_scaling

        problems += check_scaling(manifests)
    return problems


def _check_kustomization(directory: Path, manifests: Manifests) -> list[Problem]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        return [Problem(display(directory), "kustomization.yaml", "missing")]
    kustomization = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    listed = set(kustomization.get("resources") or [])
    present = {Path(file).name for file, _, _ in manifests.objects}
    problems = [Problem(display(path), "resources", f"{name} does not exist") for name in sorted(listed - present)]
    problems += [Problem(display(path), "resources", f"{name} is not listed") for name in sorted(present - listed)]
    namespaces = [dig(document, "metadata.name") for _, document in manifests.of_kind("Namespace")]
    if kustomization.get("namespace") not in namespaces:
        problems.append(Problem(display(path), "namespace", f"{kustomization.get('namespace')} is not a Namespace"))
    return problems


def _check_workload(file: str, document: Mapping[str, Any], manifests: Manifests) -> list[Problem]:
    kind, name = document["kind"], document["metadata"]["name"]
    where = f"{kind}/{name}.spec"
    problems = []
    selector = dig(document, "spec.selector.matchLabels") or {}
    if not selector.items() <= (dig(document, "spec.template.metadata.labels") or {}).items():
        problems.append(Problem(file, f"{where}.selector.matchLabels", "not all on the pod template's labels"))
    volumes = {volume["name"]: volume for volume in dig(document, "spec.template.spec.volumes") or []}
    for volume_name, volume in volumes.items():
        claim = dig(volume, "persistentVolumeClaim.claimName")
        if claim is not None and manifests.find("PersistentVolumeClaim", claim) is None:
            problems.append(Problem(file, f"{where}.volumes[{volume_name}]", f"no PersistentVolumeClaim {claim}"))
        config_map = dig(volume, "configMap.name")
        if config_map is not None and manifests.find("ConfigMap", config_map) is None:
            problems.append(Problem(file, f"{where}.volumes[{volume_name}]", f"no ConfigMap {config_map}"))
    ports = _port_names(document)
    for container in _containers(document):
        key = f"{where}.containers[{container['name']}]"
        if not image_is_pinned(str(container.get("image", ""))):
            problems.append(Problem(file, f"{key}.image", f"{container.get('image')} is not pinned to a version"))
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes:
                problems.append(Problem(file, f"{key}.volumeMounts[{mount['name']}]", "no such volume"))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = dig(container, f"{probe}.httpGet.port") or dig(container, f"{probe}.tcpSocket.port")
            if port is not None and port not in ports:
                problems.append(Problem(file, f"{key}.{probe}", f"port {port} is not a container port"))
    return problems


def _check_service(file: str, document: Mapping[str, Any], manifests: Manifests) -> list[Problem]:
    name = document["metadata"]["name"]
    selected = manifests.selected(document["spec"]["selector"])
    if len(selected) != 1:
        return [Problem(file, f"Service/{name}.spec.selector", f"selects {len(selected)} Deployments, not 1")]
    ports = _port_names(selected[0][1])
    problems = []
    for port in document["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        if target not in ports:
            message = f"targetPort {target} is not a port of Deployment/{selected[0][1]['metadata']['name']}"
            problems.append(Problem(file, f"Service/{name}.spec.ports[{port.get('name', port['port'])}]", message))
    return problems


def _config_map_mounts(document: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Path]:
    """Container path -> ``configmap/<name>``, whose file names are the ConfigMap's keys."""
    volumes = {volume["name"]: volume for volume in dig(document, "spec.template.spec.volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"], {})
        if "configMap" in volume:
            mounts[mount["mountPath"]] = Path("configmap") / volume["configMap"]["name"]
    return mounts


def _check_tfserving(manifests: Manifests, repo: Path | None) -> list[Problem]:
    file, document = manifests.find("Deployment", "tfserving") or ("", {})
    container = (dig(document, "spec.template.spec.containers") or [{}])[0]
    key = "Deployment/tfserving.spec.template.spec.containers[0]"
    problems = []
    limits = dig(container, "resources.limits") or {}
    if int(limits.get("nvidia.com/gpu", 0)) < 1:
        problems.append(Problem(file, f"{key}.resources.limits.nvidia.com/gpu", "no GPU requested"))
    flags = parse_flags(container.get("args") or [])
    mounts = {mount["mountPath"]: repo or Path(MODELS_MOUNT) for mount in container.get("volumeMounts") or []}
    found, _ = check_server_flags(flags, mounts, file, f"{key}.args", repo is not None)
    problems += found
    problems += _check_model_readiness(container, flags, _port_names(document), mounts, file, f"{key}.readinessProbe")
    service_file, service = manifests.find("Service", "tfserving") or ("", {})
    if dig(service, "spec.clusterIP") != "None":
        problems.append(Problem(service_file, "Service/tfserving.spec.clusterIP", "must be None (headless)"))
    return problems


def _check_export_job(manifests: Manifests) -> list[Problem]:
    """The Job writes configs whose base paths are where TF Serving's pods mount the same claim."""
    problems = []
    _, tfserving = manifests.find("Deployment", "tfserving") or ("", {})
    claims = {
        volume["name"]: dig(volume, "persistentVolumeClaim.claimName")
        for volume in dig(tfserving, "spec.template.spec.volumes") or []
    }
    serving_mounts = {
        claims.get(mount["name"]): mount["mountPath"]
        for container in _containers(tfserving)
        for mount in container.get("volumeMounts") or []
    }
    for file, job in manifests.of_kind("Job"):
        job_claims = {
            volume["name"]: dig(volume, "persistentVolumeClaim.claimName")
            for volume in dig(job, "spec.template.spec.volumes") or []
        }
        for container in _containers(job):
            command = " ".join(str(part) for part in [*container.get("command", []), *container.get("args", [])])
            if "-m export" not in command:
                continue
            base = re.search(r"--base-path[= ](\S+)", command)
            key = f"Job/{job['metadata']['name']}.spec.template.spec.containers[{container['name']}]"
            for mount in container.get("volumeMounts") or []:
                expected = serving_mounts.get(job_claims.get(mount["name"]))
                if expected is not None and (base is None or base.group(1).rstrip("/") != expected.rstrip("/")):
                    found = base.group(1) if base else "absent (the Job's own path)"
                    message = f"export --base-path is {found}, but TF Serving mounts the models at {expected}"
                    problems.append(Problem(file, key, message))
    return problems


def _check_model_readiness(
    container: Mapping[str, Any],
    flags: Mapping[str, str],
    ports: Mapping[str | int, int],
    mounts: Mapping[str, Path],
    file: str,
    key: str,
) -> list[Problem]:
    """Ready when a model answers its metadata (TF Serving serves it only from an AVAILABLE version):
    on the REST port, for a model the config lists."""
    get = dig(container, "readinessProbe.httpGet") or {}
    match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/\d+)?/metadata", str(get.get("path", "")))
    if match is None or ports.get(get.get("port", "")) != int(flags.get("--rest_api_port", "0")):
        return [Problem(file, key, "must be httpGet /v1/models/<model>/metadata on the --rest_api_port")]
    source = host_path(flags.get("--model_config_file", ""), mounts)
    if source is None or not source.is_file():
        return []  # reported with the flags
    from serving.modelserver import config as server_config

    try:
        names = [model.name for model in server_config.read_model_server_config(source).model_config_list.config]
    except server_config.ConfigError:
        return []  # reported with the flags
    if match.group(1) not in names:
        return [Problem(file, key, f"model {match.group(1)!r} is not in {display(source)} ({', '.join(names)})")]
    return []


def _check_gateway(manifests: Manifests, repo: Path | None) -> list[Problem]:
    file, document = manifests.find("Deployment", "gateway") or ("", {})
    container = document["spec"]["template"]["spec"]["containers"][0]
    key = "Deployment/gateway.spec.template.spec.containers[0]"
    config = option_value(container.get("args") or [], "--config")
    source = host_path(config or "", _config_map_mounts(document, container))
    found_map = manifests.find("ConfigMap", source.parent.name) if source is not None else None
    config_file, config_map = found_map or ("", {})
    if source is None or source.name not in (config_map.get("data") or {}):
        return [Problem(file, f"{key}.args[--config]", f"{config} is not a key of a mounted ConfigMap")]
    env = {item["name"]: str(item.get("value", "")) for item in container.get("env") or []}
    where = f"{config_file} ConfigMap/{config_map['metadata']['name']}.data.{source.name}"
    settings, problems = gateway_settings(config_map["data"][source.name], env, where)
    if settings is None:
        return problems
    ports = _port_names(document)
    for name, port in (("http_port", settings.http_port), ("grpc_port", settings.grpc_port)):
        if port is not None and port not in ports.values():
            problems.append(Problem(file, f"{key}.ports", f"the gateway's {name} {port} is not a container port"))
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = dig(container, f"{probe}.httpGet") or {}
        if get.get("path") != path or ports.get(get.get("port", "")) != settings.http_port:
            message = f"must be httpGet {path} on the gateway's http_port {settings.http_port}"
            problems.append(Problem(file, f"{key}.{probe}", message))
    volumes = {volume["name"]: volume for volume in dig(document, "spec.template.spec.volumes") or []}
    claims = {
        mount["mountPath"]: repo or Path(MODELS_MOUNT)
        for mount in container.get("volumeMounts") or []
        if "persistentVolumeClaim" in volumes.get(mount["name"], {})
    }
    problems += check_gateway_files(settings, claims, where, repo is not None)
    for upstream, upstream_config in settings.upstreams.items():
        for index, target in enumerate(upstream_config.targets):
            host, port = split_target(target)
            target_key = f"upstreams.{upstream}.targets[{index}]"
            service = host.split(".")[0]
            grpc_ports = _service_grpc_ports(manifests, service)
            if grpc_ports is None:
                problems.append(Problem(where, target_key, f"{host!r} is not a Service"))
                continue
            if port not in grpc_ports:
                problems.append(Problem(where, target_key, f"port {port} is not the gRPC port of Service/{host}"))
            _, found = manifests.find("Service", service) or ("", {})
            if target.startswith("dns:") and dig(found, "spec.clusterIP") != "None":
                message = f"Service/{service} is not headless: its name resolves to one virtual IP, not to every pod"
                problems.append(Problem(where, target_key, message))
    return problems


def _service_grpc_ports(manifests: Manifests, name: str) -> set[int] | None:
    """Service ports that lead to the selected pods' gRPC ``--port`` (TF Serving's flag, 8500 by default)."""
    found = manifests.find("Service", name)
    if found is None:
        return None
    selected = manifests.selected(found[1]["spec"].get("selector") or {})
    if not selected:
        return set()
    container = selected[0][1]["spec"]["template"]["spec"]["containers"][0]
    grpc_port = int(parse_flags(container.get("args") or []).get("--port", "8500"))
    pod_ports = _port_names(selected[0][1])
    return {
        int(port["port"])
        for port in found[1]["spec"]["ports"]
        if pod_ports.get(port.get("targetPort", port["port"])) == grpc_port
    }


def _check_locust(manifests: Manifests) -> list[Problem]:
    problems = []
    _, gateway_service = manifests.find("Service", "gateway") or ("", {})
    gateway_ports = {int(port["port"]) for port in gateway_service["spec"]["ports"]}
    for name in ("locust-master", "locust-worker"):
        file, document = manifests.find("Deployment", name) or ("", {})
        container = document["spec"]["template"]["spec"]["containers"][0]
        arguments = container.get("args") or []
        key = f"Deployment/{name}.spec.template.spec.containers[0].args"
        if name == "locust-master":
            host = option_value(arguments, "--host") or ""
            service, port = split_target(host) if ":" in host else (host, 0)
            if service != "gateway" or port not in gateway_ports:
                problems.append(Problem(file, f"{key}[--host]", f"{host} is not a port of Service/gateway"))
        elif manifests.find("Service", option_value(arguments, "--master-host") or "") is None:
            problems.append(Problem(file, f"{key}[--master-host]", "is not a Service"))
    return problems


def gateway_config(manifests: Manifests) -> Any | None:
    """The gateway's Settings as its Deployment mounts them; None where they do not load (reported above)."""
    _, document = manifests.find("Deployment", "gateway") or ("", {})
    containers = dig(document, "spec.template.spec.containers") or []
    if not containers:
        return None
    container = containers[0]
    config = option_value(container.get("args") or [], "--config") or ""
    source = host_path(config, _config_map_mounts(document, container))
    found = manifests.find("ConfigMap", source.parent.name) if source is not None else None
    if source is None or found is None or source.name not in (found[1].get("data") or {}):
        return None
    env = {item["name"]: str(item.get("value", "")) for item in container.get("env") or []}
    settings, _ = gateway_settings(found[1]["data"][source.name], env, "")
    return settings
