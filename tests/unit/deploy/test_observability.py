"""deploy/'s dashboard and rules, checked offline: Grafana's schema (through grafana-foundation-sdk's
models), the provisioning the compose file mounts, and promtool on the rules and their unit tests.
(tests/integration/deploy/test_prometheus.py runs every query on a real Prometheus under load.)
Grafana itself is not installable here, so the dashboard is never rendered by Grafana in these tests.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.checks.common import ROOT

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tensorgate.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"


def _plain(value: Any) -> Any:
    """The SDK's objects as the JSON they encode to."""
    if hasattr(value, "to_json"):
        return _plain(value.to_json())
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _lost(original: Any, parsed: Any, path: str = "") -> list[str]:
    """Keys and values of ``original`` that did not survive parsing (added defaults are fine)."""
    if isinstance(original, dict):
        if not isinstance(parsed, dict):
            return [path]
        return [p for key, item in original.items() for p in _lost(item, parsed.get(key, _MISSING), f"{path}/{key}")]
    if isinstance(original, list):
        if not isinstance(parsed, list) or len(parsed) != len(original):
            return [path]
        return [p for i, (a, b) in enumerate(zip(original, parsed, strict=True)) for p in _lost(a, b, f"{path}[{i}]")]
    return [] if original == parsed else [path]


_MISSING = object()


def test_dashboard_is_valid_against_grafanas_schema() -> None:
    sdk = pytest.importorskip("grafana_foundation_sdk.models.dashboard", reason="pip install grafana-foundation-sdk")
    prometheus = pytest.importorskip("grafana_foundation_sdk.models.prometheus")
    document = json.loads(DASHBOARD.read_text())
    parsed = _plain(sdk.Dashboard.from_json(document))
    assert _lost(document, parsed) == []  # a misspelt or unknown key is dropped by the schema's model
    for panel in document["panels"]:
        for target in panel.get("targets", []):
            assert _lost(target, _plain(prometheus.Dataquery.from_json(target))) == [], panel["title"]


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    document = json.loads(DASHBOARD.read_text())
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    panels = [panel for panel in document["panels"] if panel["type"] != "row"]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"]), panel["title"]
    cells = set()  # panels never overlap on the 24-column grid
    for panel in document["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))


def test_compose_provisions_grafana_and_the_rules() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {volume["target"]: DEPLOY / volume["source"] for volume in grafana["volumes"]}
    assert (mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").is_file()
    dashboards = yaml.safe_load((mounts["/etc/grafana/provisioning"] / "dashboards" / "tensorgate.yml").read_text())
    folder = dashboards["providers"][0]["options"]["path"]
    assert (mounts[folder] / "tensorgate.json").is_file()
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{folder}/tensorgate.json"
    prometheus = {
        volume["target"]: DEPLOY / volume["source"] for volume in compose["services"]["prometheus"]["volumes"]
    }
    config = yaml.safe_load(prometheus["/etc/prometheus/prometheus.yml"].read_text())
    assert [prometheus[path] for path in config["rule_files"]] == [DEPLOY / "rules.yml"]


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is missing: apt-get install prometheus")
    return found


def test_promtool_checks_the_rules(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "rules", "rules.yml"], cwd=DEPLOY, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 20 rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = subprocess.run([promtool, "test", "rules", "rules.test.yml"], cwd=DEPLOY, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """The same tests against rules whose error threshold is off: promtool must say so."""
    (tmp_path / "rules.yml").write_text((DEPLOY / "rules.yml").read_text().replace("> 0.05", "> 0.5"))
    shutil.copy(DEPLOY / "rules.test.yml", tmp_path / "rules.test.yml")
    result = subprocess.run([promtool, "test", "rules", "rules.test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert "TensorgateHighErrorRatio" in result.stdout + result.stderr
