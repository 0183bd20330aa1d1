"""deploy/k8s/: what keeps TF Serving and the gateways up while they scale and while nodes drain.

For each of the two Deployments: resources on every container (the HPA's CPU target needs CPU
requests), an HPA that scales it (and no ``spec.replicas`` fighting it), a PodDisruptionBudget that
still lets a drain proceed at the HPA's minimum, pod anti-affinity on the node, and termination timed
to what the code does: TF Serving keeps serving (preStop) until every gateway has resolved the Service
again (``resolve_s``), then has the gateway's request deadline to finish; the gateway's grace covers
its preStop and its own ``shutdown_grace_s``; liveness and startup probes on the ports the flags open.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deploy.checks.common import Problem, dig, parse_flags
from deploy.checks.k8s import Manifests, gateway_config

SCALED = ("tfserving", "gateway")
DEFAULT_GRACE_S = 30  # Kubernetes' terminationGracePeriodSeconds when unset


def check_scaling(manifests: Manifests) -> list[Problem]:
    settings = gateway_config(manifests)
    problems = []
    for name in SCALED:
        file, document = manifests.find("Deployment", name) or ("", {})
        if not document:
            continue
        problems += _resources(file, document)
        problems += _autoscaling(file, document, manifests)
        problems += _anti_affinity(file, document)
    if settings is not None:
        problems += _termination(manifests, settings)
    problems += _tfserving_probes(manifests)
    return problems


def _containers(document: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = dig(document, "spec.template.spec") or {}
    return [(kind, c) for kind in ("initContainers", "containers") for c in spec.get(kind) or []]


def _resources(file: str, document: Mapping[str, Any]) -> list[Problem]:
    name = document["metadata"]["name"]
    problems = []
    for kind, container in _containers(document):
        key = f"Deployment/{name}.spec.template.spec.{kind}[{container.get('name')}].resources"
        missing = [
            f
            for f in ("requests.cpu", "requests.memory", "limits.memory")
            if dig(container.get("resources"), f) is None
        ]
        if missing and kind == "containers":
            problems.append(Problem(file, key, f"{', '.join(missing)} missing"))
    return problems


def _autoscaling(file: str, document: Mapping[str, Any], manifests: Manifests) -> list[Problem]:
    name = document["metadata"]["name"]
    scalers = [
        (f, h) for f, h in manifests.of_kind("HorizontalPodAutoscaler") if dig(h, "spec.scaleTargetRef.name") == name
    ]
    if not scalers:
        return [Problem(file, f"Deployment/{name}", "no HorizontalPodAutoscaler scales it")]
    hpa_file, hpa = scalers[0]
    problems = []
    if dig(document, "spec.replicas") is not None:
        message = (
            f"set while HorizontalPodAutoscaler/{hpa['metadata']['name']} scales it (every apply would reset the count)"
        )
        problems.append(Problem(file, f"Deployment/{name}.spec.replicas", message))
    minimum = int(dig(hpa, "spec.minReplicas") or 1)
    if minimum < 2:
        problems.append(
            Problem(
                hpa_file,
                f"HorizontalPodAutoscaler/{name}.spec.minReplicas",
                "below 2: one pod is a single point of failure",
            )
        )
    budgets = [
        (f, b)
        for f, b in manifests.of_kind("PodDisruptionBudget")
        if (dig(b, "spec.selector.matchLabels") or {}).items()
        <= (dig(document, "spec.template.metadata.labels") or {}).items()
    ]
    if not budgets:
        problems.append(Problem(file, f"Deployment/{name}", "no PodDisruptionBudget selects its pods"))
        return problems
    budget_file, budget = budgets[0]
    min_available, max_unavailable = dig(budget, "spec.minAvailable"), dig(budget, "spec.maxUnavailable")
    key = f"PodDisruptionBudget/{budget['metadata']['name']}.spec"
    if isinstance(min_available, int) and min_available >= minimum:
        message = (
            f"minAvailable {min_available} at the HPA's minimum of {minimum} pods: a node drain could never evict one"
        )
        problems.append(Problem(budget_file, f"{key}.minAvailable", message))
    if isinstance(max_unavailable, int) and max_unavailable < 1:
        problems.append(Problem(budget_file, f"{key}.maxUnavailable", "below 1: a node drain could never evict a pod"))
    return problems


def _anti_affinity(file: str, document: Mapping[str, Any]) -> list[Problem]:
    name = document["metadata"]["name"]
    labels = dig(document, "spec.template.metadata.labels") or {}
    affinity = dig(document, "spec.template.spec.affinity.podAntiAffinity") or {}
    terms = list(affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    terms += [
        term.get("podAffinityTerm") or {}
        for term in affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    ]
    for term in terms:
        selector = dig(term, "labelSelector.matchLabels") or {}
        if selector and selector.items() <= labels.items() and term.get("topologyKey"):
            return []
    return [
        Problem(
            file, f"Deployment/{name}.spec.template.spec.affinity.podAntiAffinity", "no term keeps its own pods apart"
        )
    ]


def _grace(document: Mapping[str, Any]) -> tuple[int, int]:
    """(terminationGracePeriodSeconds, preStop sleep seconds of the first container)."""
    spec = dig(document, "spec.template.spec") or {}
    container = (spec.get("containers") or [{}])[0]
    sleep = dig(container, "lifecycle.preStop.sleep.seconds") or 0
    return int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)), int(sleep)


def _termination(manifests: Manifests, settings: Any) -> list[Problem]:
    problems = []
    resolve_s = max(
        (
            upstream.resolve_s
            for upstream in settings.upstreams.values()
            if any(t.startswith("dns:") for t in upstream.targets)
        ),
        default=0.0,
    )
    file, tfserving = manifests.find("Deployment", "tfserving") or ("", {})
    grace, sleep = _grace(tfserving)
    key = "Deployment/tfserving.spec.template.spec"
    if resolve_s and sleep < 2 * resolve_s:
        message = (
            f"preStop sleeps {sleep} s; gateways may still send calls for 2 x resolve_s = {2 * resolve_s:g} s "
            "(their period plus DNS caching) after the pod leaves the Service"
        )
        problems.append(Problem(file, f"{key}.containers[0].lifecycle.preStop", message))
    if grace < sleep + settings.timeouts.request_s:
        deadline = settings.timeouts.request_s
        message = f"{grace} s is less than preStop {sleep} s + the gateway's request deadline {deadline:g} s"
        problems.append(Problem(file, f"{key}.terminationGracePeriodSeconds", message))
    file, gateway = manifests.find("Deployment", "gateway") or ("", {})
    grace, sleep = _grace(gateway)
    if grace < sleep + settings.timeouts.shutdown_grace_s:
        drain = settings.timeouts.shutdown_grace_s
        message = f"{grace} s is less than preStop {sleep} s + the gateway's shutdown_grace_s {drain:g} s"
        problems.append(Problem(file, "Deployment/gateway.spec.template.spec.terminationGracePeriodSeconds", message))
    return problems


def _tfserving_probes(manifests: Manifests) -> list[Problem]:
    """Liveness and startup open a TCP connection to a port TF Serving's flags open."""
    file, document = manifests.find("Deployment", "tfserving") or ("", {})
    container = (dig(document, "spec.template.spec.containers") or [{}])[0]
    flags = parse_flags(container.get("args") or [])
    opened = {int(flags.get("--port", "8500")), int(flags.get("--rest_api_port", "0"))}
    named = {str(p.get("name")): int(p["containerPort"]) for p in container.get("ports") or []}
    problems = []
    for probe in ("livenessProbe", "startupProbe"):
        port = dig(container, f"{probe}.tcpSocket.port") or dig(container, f"{probe}.httpGet.port")
        if port is None:
            problems.append(Problem(file, f"Deployment/tfserving.spec.template.spec.containers[0].{probe}", "missing"))
            continue
        number = named.get(str(port), port if isinstance(port, int) else -1)
        if number not in opened:
            message = f"port {port} is not one TF Serving opens (--port, --rest_api_port)"
            problems.append(Problem(file, f"Deployment/tfserving.spec.template.spec.containers[0].{probe}", message))
    return problems
