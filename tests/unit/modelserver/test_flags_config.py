from __future__ import annotations

import re
from pathlib import Path

import pytest

from serving import protos
from serving.modelserver import config, flags
from serving.modelserver.grpc_server import parse_channel_arguments
from serving.modelserver.manager import aspired_versions, request_string, scan_versions


def test_flags_take_tf_serving_syntax_and_defaults() -> None:
    parsed = flags.parse(["--model_base_path=/m", "--enable_batching", "--rest_api_port=8501", "--port=9000"])
    assert (parsed.port, parsed.rest_api_port, parsed.model_name) == (9000, 8501, "default")
    assert parsed.enable_batching and parsed.file_system_poll_wait_seconds == 1
    assert parsed.rest_api_timeout_in_ms == 30000
    assert flags.parse(["--model_base_path=/m", "--enable_batching=false"]).enable_batching is False
    assert parsed.bind_address == "0.0.0.0"  # TF Serving's: every address
    assert flags.parse(["--model_base_path=/m", "--bind_address=127.0.0.2"]).bind_address == "127.0.0.2"


def test_ignored_tf_serving_flags_are_accepted_and_listed() -> None:
    parsed = flags.parse(["--model_base_path=/m", "--ssl_config_file=x", "--enable_profiler=false"])
    assert parsed.ignored == ["ssl_config_file", "enable_profiler"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model_base_path=/m", "--nope=1"], "Unknown command line flag 'nope'"),
        (["--model_base_path=/m", "--port=x"], "Illegal value 'x' specified for int flag 'port'"),
        ([], "Both server_model_config_file and model_base_path are empty!"),
        (["--model_base_path=/m", "--model_config_file=/c"], "mutually exclusive"),
        (["--model_base_path", "/m"], "needs a value: --model_base_path=VALUE"),
    ],
)
def test_bad_command_lines(argv: list[str], message: str) -> None:
    with pytest.raises(flags.FlagError, match=re.escape(message)):
        flags.parse(argv)


def test_model_config_validation(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "/a" model_platform: "pytorch" } }')
    with pytest.raises(config.ConfigError, match="model_platform 'pytorch'"):
        config.read_model_server_config(path)
    path.write_text('model_config_list { config { name: "a" base_path: "/a" } config { name: "a" base_path: "/b" } }')
    with pytest.raises(config.ConfigError, match="appears twice"):
        config.read_model_server_config(path)


def test_batching_parameters_text_format(tmp_path: Path) -> None:
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 64 }\nallowed_batch_sizes: 16\nallowed_batch_sizes: 64\n")
    options = config.read_batching_parameters(path)
    assert (options.max_batch_size, options.allowed_batch_sizes, options.batch_timeout_micros) == (64, (16, 64), 0)
    path.write_text("max_batch_size { value: 64 }\nallowed_batch_sizes: 16\n")
    with pytest.raises(config.ConfigError, match="must equal max_batch_size"):
        config.read_batching_parameters(path)
    path.write_text("max_batch_size: 64\n")
    with pytest.raises(config.ConfigError, match="not valid text format"):
        config.read_batching_parameters(path)


def test_monitoring_config_defaults(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enable: true }")
    assert config.read_monitoring_config(path) == config.MonitoringOptions(True, "/monitoring/prometheus/metrics")
    assert config.read_monitoring_config(None).prometheus_enabled is False


def test_version_policies(tmp_path: Path) -> None:
    for name in ("00000123", "124", "7", "tmp", ".incoming-9"):
        (tmp_path / name).mkdir()
    on_disk = scan_versions(tmp_path)
    assert sorted(on_disk) == [7, 123, 124]
    model = protos.ModelConfig(name="m", base_path=str(tmp_path))
    assert aspired_versions(model, on_disk) == {124}
    model.model_version_policy.latest.num_versions = 2
    assert aspired_versions(model, on_disk) == {123, 124}
    model.model_version_policy.all.SetInParent()
    assert aspired_versions(model, on_disk) == {7, 123, 124}
    model.model_version_policy.specific.versions.extend([7, 99])
    assert aspired_versions(model, on_disk) == {7}
    assert request_string("m", None) == "Latest(m)" and request_string("m", 3) == "Specific(m, 3)"


def test_channel_arguments() -> None:
    assert parse_channel_arguments("grpc.max_receive_message_length=1024,grpc.primary_user_agent=x") == [
        ("grpc.max_receive_message_length", 1024),
        ("grpc.primary_user_agent", "x"),
    ]
    with pytest.raises(ValueError):
        parse_channel_arguments("oops")
