"""Deployment files parse back with TF Serving's protos (and the model server's readers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from export import configs
from export.configs import Servable
from serving.modelserver.config import (
    BatchingParameters,
    MonitoringConfig,
    read_batching_parameters,
    read_model_server_config,
    read_monitoring_config,
)


def _parse_model_server_config(text: str):
    from tensorflow_serving.config import model_server_config_pb2

    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_one_version_gets_latest_policy_and_no_labels() -> None:
    text = configs.model_server_config([Servable("cnn", "tensorflow", (1,))], "/models")
    config = _parse_model_server_config(text)
    (entry,) = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == ("cnn", "/models/cnn", "tensorflow")
    assert entry.model_version_policy.latest.num_versions == 1
    assert dict(entry.version_labels) == {}


def test_two_versions_get_stable_and_canary_both_loaded() -> None:
    text = configs.model_server_config([Servable("cnn_onnx", "onnx", (1, 2, 3))], "/models/")
    (entry,) = _parse_model_server_config(text).model_config_list.config
    assert entry.base_path == "/models/cnn_onnx"
    assert entry.model_platform == "onnx"
    assert list(entry.model_version_policy.specific.versions) == [2, 3]
    assert dict(entry.version_labels) == {"stable": 2, "canary": 3}


def test_batching_parameters_parse_with_tf_serving_fields(tmp_path: Path) -> None:
    text = configs.batching_parameters(cpus=2)
    params = text_format.Parse(text, BatchingParameters())
    assert params.max_batch_size.value == 64
    assert list(params.allowed_batch_sizes)[-1] == params.max_batch_size.value
    assert params.num_batch_threads.value == 2
    path = tmp_path / configs.BATCHING_FILE
    path.write_text(text)
    options = read_batching_parameters(path)  # the model server's own checks (last size == max)
    assert (options.max_batch_size, options.batch_timeout_micros, options.allowed_batch_sizes) == (
        64,
        2000,
        (8, 16, 32, 64),
    )


def test_monitoring_config_enables_prometheus(tmp_path: Path) -> None:
    text = configs.monitoring_config()
    parsed = text_format.Parse(text, MonitoringConfig())
    assert parsed.prometheus_config.enable is True
    assert parsed.prometheus_config.path == "/monitoring/prometheus/metrics"
    path = tmp_path / configs.MONITORING_FILE
    path.write_text(text)
    options = read_monitoring_config(path)
    assert (options.prometheus_enabled, options.prometheus_path) == (True, "/monitoring/prometheus/metrics")


def test_write_all_is_idempotent_and_readable_by_the_model_server(tmp_path: Path) -> None:
    savedmodels = [Servable("cnn", "tensorflow", (1,))]
    everything = [*savedmodels, Servable("cnn_dynamic", "tflite", (1,)), Servable("cnn_onnx", "onnx", (1,))]
    changed = configs.write_all(tmp_path, savedmodels, everything, "/models")
    assert sorted(path.name for path in changed) == sorted(
        [configs.MODELS_CONFIG, configs.MODELSERVER_CONFIG, configs.BATCHING_FILE, configs.MONITORING_FILE]
    )
    stamps = {path: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    assert configs.write_all(tmp_path, savedmodels, everything, "/models") == []
    assert {path: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == stamps
    served = read_model_server_config(tmp_path / configs.MODELSERVER_CONFIG)
    assert [(m.name, m.model_platform) for m in served.model_config_list.config] == [
        ("cnn", "tensorflow"),
        ("cnn_dynamic", "tflite"),
        ("cnn_onnx", "onnx"),
    ]
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("names", [["int4"], ["onnx", "tflite"]])
def test_unknown_format_is_one_clear_error(names: list[str]) -> None:
    from export.variants import ExportError, parse_formats

    with pytest.raises(
        ExportError, match=r"unknown format '(int4|tflite)'; choose from: dynamic, fp16, int8, onnx, trt"
    ):
        parse_formats(names)


def test_formats_run_in_dependency_order() -> None:
    from export.variants import parse_formats

    assert parse_formats(["trt", "onnx", "int8"]) == ["int8", "onnx", "trt"]
    assert parse_formats(None) == ["dynamic", "fp16", "int8", "onnx", "trt"]
