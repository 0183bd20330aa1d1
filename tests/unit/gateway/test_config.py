from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serving.gateway.config import ConfigError, load_settings
from serving.gateway.service import Gateway


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_defaults_front_a_model_server_on_8500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENSORGATE_REPO", raising=False)
    settings = load_settings()
    assert (settings.http_port, settings.grpc_port) == (8000, 8001)
    assert settings.upstreams["default"].targets == ["localhost:8500"]
    assert settings.repo == Path("models")
    assert settings.api_keys == []


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _yaml(tmp_path, "http_port: 9000\nlimits:\n  max_batch_size: 8\n  max_body_bytes: 1000\n")
    monkeypatch.setenv("TENSORGATE_LIMITS__MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("TENSORGATE_UPSTREAMS", '{"default": {"targets": ["tfs-a:8500", "tfs-b:8500"]}}')
    monkeypatch.setenv("TENSORGATE_API_KEYS", '["k1"]')
    settings = load_settings(path)
    assert settings.http_port == 9000
    assert settings.limits.max_batch_size == 16
    assert settings.limits.max_body_bytes == 1000
    assert settings.upstreams["default"].targets == ["tfs-a:8500", "tfs-b:8500"]
    assert [key.get_secret_value() for key in settings.api_keys] == ["k1"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("limits:\n  max_body_bytes: 0\n", "limits.max_body_bytes: Input should be greater than 0"),
        ("limits:\n  max_bodybytes: 5\n", "limits.max_bodybytes: Extra inputs are not permitted"),
        (
            "upstreams:\n  default:\n    targets: [nohostport]\n",
            "upstreams.default.targets: target 'nohostport' is not host:port, dns:///name:port or "
            "dns://server[:port]/name:port",
        ),
        ("servables:\n  cnn: elsewhere\n", "servables.cnn: unknown upstream 'elsewhere'"),
        (
            "ensembles:\n  e:\n    members: [a, b]\n    voting: weighted\n",
            "ensembles.e: weighted voting needs one weight per member",
        ),
        ("ensembles:\n  e:\n    members: [a, b]\n    quorum: 3\n", "ensembles.e: quorum 3 exceeds 2 members"),
        ("routes:\n  r:\n    split: {a: 0}\n", "routes.r.split: weights must be >= 0 with a positive sum"),
        ("- a list\n", "the top level must be a mapping"),
    ],
)
def test_a_bad_key_is_named_in_one_line(tmp_path: Path, text: str, line: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_yaml(tmp_path, text))
    assert str(error.value).endswith(line)
    assert "\n" not in str(error.value)


def test_references_are_checked_against_the_repository(tmp_path: Path) -> None:
    config = 'model_config_list { config { name: "cnn" base_path: "/m/cnn" } }\n'
    (tmp_path / "models.config").write_text(config)
    settings = load_settings(
        None, repo=tmp_path, routes={"canary": {"split": {"cnn": 9, "cnn_int9": 1}}}, grpc_port=None
    )
    with pytest.raises(ConfigError) as error:
        Gateway(settings)
    assert str(error.value) == "routes.canary: unknown servable 'cnn_int9' (known: ['cnn'])"
    assert list(Gateway(load_settings(None, repo=tmp_path)).catalog.upstream_of) == ["cnn"]
    variants = tmp_path / "modelserver.config"
    variants.write_text(config.replace('name: "cnn"', 'name: "cnn_int8"'))
    settings = load_settings(None, repo=tmp_path, model_config_file=variants)
    assert list(Gateway(settings).catalog.upstream_of) == ["cnn_int8"]
    (tmp_path / "broken.config").write_text("model_config_list { nonsense }")
    with pytest.raises(ConfigError, match=r"^model_config_file: .*broken\.config is not a model_config_list"):
        Gateway(load_settings(None, model_config_file=tmp_path / "broken.config"))


def test_the_process_stops_with_one_line(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "timeouts:\n  request_s: -1\n")
    result = subprocess.run(
        [sys.executable, "-m", "serving.gateway", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == "invalid gateway config: timeouts.request_s: Input should be greater than 0\n"
