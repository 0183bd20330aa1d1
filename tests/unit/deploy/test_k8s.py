"""deploy/k8s/: every manifest parses, has its kind's fields, and the links between them agree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deploy.checks.common import ROOT
from deploy.checks.k8s import Manifests, check_k8s

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
        ("Job", "tensorgate-export"),
        ("Namespace", "tensorgate"),
        ("PersistentVolumeClaim", "tensorgate-models"),
        ("PodDisruptionBudget", "gateway"),
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
    version = kubernetes_validate.latest_version()
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
    _rewrite(k8s / "gateway.yaml", 'targets: ["tfserving:8500"]', 'targets: ["tfserving:8501", "tfs:8500"]')
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
