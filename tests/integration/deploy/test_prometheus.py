"""A real Prometheus on loopback scrapes the real gateway and model server under a short Locust load,
with deploy/rules.yml loaded: every query of the Grafana dashboard and every recording rule must
return data, and every rule must evaluate without error.

Grafana is not installable here; its panels' queries are run by Prometheus itself (``$__rate_interval``
replaced by a window that spans several scrapes).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from export.configs import batching_parameters, monitoring_config
from tests.integration.gateway.conftest import Gateway, Proc, _wait_port, free_port
from tests.integration.gateway.test_modelserver import MODELS, ModelServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
SCRAPE_S = 1
RATE_WINDOW = "10s"  # what $__rate_interval stands for: ten scrapes
LOAD_S = 30


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prometheus")


@pytest.fixture(scope="module")
def stack(tmp_module: Path, quick_repo: Path) -> Iterator[tuple[ModelServer, Gateway]]:
    (tmp_module / "batching.txt").write_text(batching_parameters(2))
    (tmp_module / "monitoring.config").write_text(monitoring_config())
    flags = (
        "--enable_batching",
        f"--batching_parameters_file={tmp_module / 'batching.txt'}",
        f"--monitoring_config_file={tmp_module / 'monitoring.config'}",
    )
    model_server = ModelServer(tmp_module, quick_repo, flags)
    config = {
        "repo": str(quick_repo),
        "upstreams": {"default": {"targets": [f"127.0.0.1:{model_server.grpc_port}"]}},
        "servables": {name: "default" for name in MODELS},
        "ensembles": {"vote": {"members": ["cnn", "lstm", "transformer"]}},
    }
    gateway = Gateway(tmp_module, config)
    try:
        gateway.wait_ready(60)
        yield model_server, gateway
    finally:
        gateway.stop()
        model_server.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_module: Path, stack: tuple[ModelServer, Gateway]) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary: apt-get install prometheus")
    model_server, gateway = stack
    deployed = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    metrics_path = next(job["metrics_path"] for job in deployed["scrape_configs"] if job["job_name"] == "tfserving")
    config = {  # deploy/prometheus.yml with loopback targets, a fast scrape and the rules file itself
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(DEPLOY / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "gateway",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{gateway.port}"]}],
            },
            {
                "job_name": "tfserving",
                "metrics_path": metrics_path,
                "static_configs": [{"targets": [f"127.0.0.1:{model_server.rest_port}"]}],
            },
        ],
    }
    path = tmp_module / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        binary,
        f"--config.file={path}",
        f"--storage.tsdb.path={tmp_module / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    process = Proc(args, tmp_module / "prometheus.out")
    assert process.process is not None
    try:
        _wait_port(port, process.process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _has_numbers(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


@pytest.fixture(scope="module")
def loaded(prometheus: str, stack: tuple[ModelServer, Gateway], tmp_module: Path) -> Iterator[str]:
    """Prometheus while Locust's REST and gRPC users call the gateway (the queries run during the load)."""
    _, gateway = stack
    args = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        "--users=6",
        "--spawn-rate=6",
        f"--run-time={LOAD_S}s",
        f"--host={gateway.url}",
        f"--grpc-host=127.0.0.1:{gateway.grpc_port}",
        "--servable=cnn",
        "--only-summary",
        "RestUser",
        "GrpcUser",
    ]
    locust = Proc(args, tmp_module / "locust.out")
    try:
        deadline = time.monotonic() + LOAD_S
        needed = ("tensorgate_gateway_requests_total", ":tensorflow:serving:batching:batch_delay_us_count")
        while time.monotonic() < deadline:  # both protocols seen in more than one scrape window
            counts = [_query(prometheus, f"rate({name}[{RATE_WINDOW}]) > 0") for name in needed]
            protocols = {sample["metric"].get("protocol") for sample in counts[0]}
            if all(counts) and {"http", "grpc"} <= protocols:
                break
            time.sleep(1)
        time.sleep(3 * SCRAPE_S)  # the recording rules evaluated on what was scraped
        yield prometheus
    finally:
        locust.stop()


def _dashboard_queries() -> list[tuple[str, str]]:
    document = json.loads((DEPLOY / "grafana" / "dashboards" / "tensorgate.json").read_text())
    return [
        (panel["title"], target["expr"].replace("$__rate_interval", RATE_WINDOW))
        for panel in document["panels"]
        for target in panel.get("targets", [])
    ]


def _recording_rules() -> list[str]:
    groups = yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
    return [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]


def test_both_targets_are_scraped(loaded: str) -> None:
    targets = httpx.get(f"{loaded}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert sorted((target["labels"]["job"], target["health"]) for target in targets) == [
        ("gateway", "up"),
        ("tfserving", "up"),
    ]


def test_every_dashboard_query_returns_data(loaded: str) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 20
    empty = [(title, expr) for title, expr in queries if not _has_numbers(_query(loaded, expr))]
    assert empty == [], "panels without data:\n" + "\n".join(f"{title}: {expr}" for title, expr in empty)


def test_every_recording_rule_returns_data(loaded: str) -> None:
    records = _recording_rules()
    assert len(records) == 12
    empty = [record for record in records if not _has_numbers(_query(loaded, record))]
    assert empty == []
    groups = httpx.get(f"{loaded}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 20
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []


def test_the_load_shows_as_it_was(loaded: str) -> None:
    """Some values, not only their presence: both protocols on cnn, no errors, healthy targets."""
    rate = _query(
        loaded, f'sum by (protocol) (rate(tensorgate_gateway_requests_total{{servable="cnn"}}[{RATE_WINDOW}]))'
    )
    assert {sample["metric"]["protocol"] for sample in rate} == {"http", "grpc"}
    errors = _query(loaded, "tensorgate:gateway_errors:ratio_rate5m")
    assert {float(sample["value"][1]) for sample in errors} == {0.0}
    assert [float(sample["value"][1]) for sample in _query(loaded, "tensorgate:gateway_upstream_healthy_targets")] == [
        1
    ]
    alerts = httpx.get(f"{loaded}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    firing = {alert["labels"]["alertname"] for alert in alerts if alert["state"] == "firing"}
    assert not firing & {"TensorgateHighErrorRatio", "TensorgateNoReadyUpstream", "TensorgateModelLoadFailed"}
