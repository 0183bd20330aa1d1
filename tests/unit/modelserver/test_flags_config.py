from __future__ import annotations

from pathlib import Path

import pytest

from serving import protos
from serving.modelserver import config, flags
from serving.modelserver.grpc_server import parse_channel_arguments
from serving.modelserver.manager import aspired_versions, request_string, scan_versions


def test_flags_take_tf_serving_syntax_and_defaults() -> None:
    parsed = flags.parse(["--model_base_path=/m", "--enable_batching", "--rest_api_port=8501", "--port=9000"])
    assert parsed.ok and parsed.unknown == []
    values = parsed.flags
    assert (values.port, values.rest_api_port, values.model_name) == (9000, 8501, "default")
    assert values.enable_batching and values.file_system_poll_wait_seconds == 1
    assert values.rest_api_timeout_in_ms == 30000
    assert flags.parse(["--model_base_path=/m", "--enable_batching=false"]).flags.enable_batching is False
    # command_line_flags.cc ParseBoolFlag: true/false in any case, or 1/0
    assert flags.parse(["--enable_batching=TRUE"]).flags.enable_batching is True
    assert flags.parse(["--enable_batching=0"]).flags.enable_batching is False
    assert values.bind_address == "0.0.0.0"  # TF Serving's: every address
    assert flags.parse(["--model_base_path=/m", "--bind_address=127.0.0.2"]).flags.bind_address == "127.0.0.2"


def test_defaults_are_main_cc_defaults() -> None:
    """Every flag this server acts on has TF Serving's default (main.cc / server.h Server::Options)."""
    defaults = flags.Flags()
    for spec in flags.SPECS:
        if spec.honoured or hasattr(defaults, spec.name):
            assert getattr(defaults, spec.name) == spec.default, spec.name


def test_ignored_tf_serving_flags_are_accepted_and_listed() -> None:
    parsed = flags.parse(["--model_base_path=/m", "--ssl_config_file=x", "--enable_profiler=false"])
    assert parsed.ok and parsed.flags.ignored == ["ssl_config_file", "enable_profiler"]
    assert parsed.flags.ssl_config_file == "x"  # still read at start, as TF Serving reads it


def test_bad_value_logs_tf_words_and_fails(caplog: pytest.LogCaptureFixture) -> None:
    """command_line_flags.cc: LOG(ERROR) "Couldn't interpret value V for flag N."; main.cc then prints
    the usage and returns -1."""
    for argument, value, name in (
        ("--port=x", "x", "port"),
        ("--port=99999999999", "99999999999", "port"),  # int32
        ("--port=0x10", "0x10", "port"),  # absl::SimpleAtoi: decimal only
        ("--enable_batching=yes", "yes", "enable_batching"),
        ("--per_process_gpu_memory_fraction=half", "half", "per_process_gpu_memory_fraction"),
    ):
        caplog.clear()
        assert flags.parse(["--model_base_path=/m", argument]).ok is False
        assert f"Couldn't interpret value {value} for flag {name}." in caplog.text
    assert flags.parse(["--load_retry_interval_micros=99999999999"]).ok  # int64


def test_unknown_arguments_are_left_over_as_tf_serving_leaves_them() -> None:
    """Flags::Parse passes through what names no flag: a misspelt flag, a value after a space, a
    single dash, a string flag without "=", anything after "--"."""
    parsed = flags.parse(["--model_base_path", "/m", "-port=1", "--no_such_flag=1", "--", "--port=2"])
    assert parsed.ok
    assert parsed.unknown == ["--model_base_path", "/m", "-port=1", "--no_such_flag=1", "--", "--port=2"]
    assert parsed.flags.port == 8500 and parsed.flags.model_base_path == ""
    assert flags.parse(["--help"]).ok is False  # Parse returns false for --help: usage, exit 255


def test_usage_lists_flags_like_flags_usage() -> None:
    text = flags.usage()
    assert text.startswith(f"usage: {flags.PROGRAM}\nFlags:\n")
    assert "\t--port=8500                      \tint32\t" in text
    assert '\t--model_name="default"           \tstring\t' in text
    assert "\t--enable_batching=false          \tbool\t" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model_config_list { config { name: "a" base_path: "/a" model_platform: "pytorch" } }',
            "Model a requests unsupported platform pytorch",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" model_platform: "tensorflow" } '
            'config { name: "a" base_path: "/b" model_platform: "tensorflow" } }',
            "Illegal to list model a multiple times in config list",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" } }',
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor ModelServerConfig::model_platform.",
        ),
        (
            'model_config_list { config { name: "a" base_path: "/a" model_type: TENSORFLOW model_platform: "x" } }',
            "Illegal setting both ModelServerConfig::model_type (deprecated) and ModelServerConfig::model_platform.",
        ),
    ],
)
def test_model_config_validation_in_server_core_words(tmp_path: Path, text: str, message: str) -> None:
    """server_core.cc GetPlatform, ValidateModelConfigList and CreateStoragePathRoutes."""
    path = tmp_path / "models.config"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as caught:
        config.read_model_server_config(path)
    assert (caught.value.code, caught.value.message) == ("INVALID_ARGUMENT", message)


def test_deprecated_model_type_tensorflow_still_works(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { name: "a" base_path: "/a" model_type: TENSORFLOW } }')
    assert config.model_platform(config.read_model_server_config(path).model_config_list.config[0]) == "tensorflow"


def test_config_file_errors_as_parse_proto_text_file_reports_them(tmp_path: Path) -> None:
    """util/proto_util.h ParseProtoTextFile: a missing file is the file system's error, a text-format
    mistake is "Invalid protobuf file: '<path>'" after protobuf's own error lines."""
    with pytest.raises(config.ConfigError) as caught:
        config.read_model_server_config(tmp_path / "missing.config")
    assert caught.value.code == "NOT_FOUND"
    assert caught.value.message == f"{tmp_path / 'missing.config'}; No such file or directory"
    path = tmp_path / "models.config"
    path.write_text('model_config_list { config { nme: "a" } }\n')
    with pytest.raises(config.ConfigError) as caught:
        config.read_model_server_config(path)
    assert caught.value.message == f"Invalid protobuf file: '{path}'"
    assert caught.value.logged == (
        "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:33: "
        'Message type "tensorflow.serving.ModelConfig" has no field named "nme".',
    )


def test_batching_parameters_text_format(tmp_path: Path) -> None:
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 64 }\nallowed_batch_sizes: 16\nallowed_batch_sizes: 64\n")
    options = config.read_batching_parameters(path)
    assert (options.max_batch_size, options.allowed_batch_sizes, options.batch_timeout_micros) == (64, (16, 64), 0)
    path.write_text("max_batch_size: 64\n")
    with pytest.raises(config.ConfigError) as caught:
        config.read_batching_parameters(path)
    assert caught.value.logged == (
        'Error parsing text-format tensorflow.serving.BatchingParameters: 1:17: Expected "{", found "64".',
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # batching_session.cc / bundle_factory_util.cc, checked when TF Serving builds a batch queue
        (
            "max_batch_size { value: 64 }\nallowed_batch_sizes: 16\n",
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 16; expected 64",
        ),
        (
            "max_batch_size { value: 64 }\nallowed_batch_sizes: 32\nallowed_batch_sizes: 16\nallowed_batch_sizes: 64\n",
            "allowed_batch_sizes entries must be monotonically increasing",
        ),
        (
            "max_batch_size { value: 8 }\nenable_large_batch_splitting { value: true }\nallowed_batch_sizes: 16\n",
            "Last entry in allowed_batch_sizes must be less than or equal to max_batch_size; "
            "last entry was 16; expected 8",
        ),
        # shared_batch_scheduler.h
        ("max_enqueued_batches { value: 0 }", "max_enqueued_batches must be positive; was 0"),
        ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must be non-negative; was -1"),
        ("num_batch_threads { value: 0 }", "num_batch_threads must be positive; was 0"),
        ("max_batch_size { value: 0 }", "input_batch_size_limit must be positive; was 0"),
    ],
)
def test_batching_parameter_checks_in_tf_words(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "batching.config"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as caught:
        config.read_batching_parameters(path)
    assert caught.value.message == message


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


def test_thread_flags_pick_the_runtimes_thread_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, one intra-op thread and one inter-op thread per core (measured, docs/modelserver.md); a flag
    given wins, and tensorflow_session_parallelism sets both, as in TF Serving."""
    from serving.modelserver.app import runtime_options

    monkeypatch.setattr("os.cpu_count", lambda: 6)
    unset = runtime_options(flags.parse(["--model_base_path=/m"]).flags)
    assert (unset.intra_op_threads, unset.inter_op_threads) == (1, 6)
    session = runtime_options(flags.parse(["--model_base_path=/m", "--tensorflow_session_parallelism=3"]).flags)
    assert (session.intra_op_threads, session.inter_op_threads) == (3, 3)
    both = ["--tensorflow_intra_op_parallelism=4", "--tensorflow_inter_op_parallelism=2"]
    given = runtime_options(flags.parse(["--model_base_path=/m", *both]).flags)
    assert (given.intra_op_threads, given.inter_op_threads) == (4, 2)
