"""TF Serving's config files: model_config_list, batching parameters and monitoring config.

``ModelServerConfig`` comes from tensorflow-serving-api's descriptors (``serving.protos``).
``BatchingParameters`` (session_bundle_config.proto) and ``MonitoringConfig`` (monitoring_config.proto)
are not in that wheel, so this module builds a small descriptor for each in code, with TF Serving's
field names and numbers, and parses their text format with google.protobuf's own text_format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from serving import protos


class ConfigError(Exception):
    """A config file that cannot be used; the server stops at start with this one line."""


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorgate/tfs_batching_monitoring.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    F = descriptor_pb2.FieldDescriptorProto
    batching = file.message_type.add(name="BatchingParameters")
    for name, number, type_name in (
        ("max_batch_size", 1, ".google.protobuf.Int64Value"),
        ("batch_timeout_micros", 2, ".google.protobuf.Int64Value"),
        ("max_enqueued_batches", 3, ".google.protobuf.Int64Value"),
        ("num_batch_threads", 4, ".google.protobuf.Int64Value"),
        ("thread_pool_name", 5, ".google.protobuf.StringValue"),
        ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue"),
        ("max_execution_batch_size", 9, ".google.protobuf.Int64Value"),
        ("batch_padding_policy", 10, ".google.protobuf.StringValue"),
    ):
        batching.field.add(name=name, number=number, type=F.TYPE_MESSAGE, type_name=type_name, label=F.LABEL_OPTIONAL)
    batching.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=F.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=F.LABEL_OPTIONAL,
    )
    pool.Add(file)
    return pool


_POOL = _build_pool()
BatchingParameters: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
)
MonitoringConfig: Any = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("tensorflow.serving.MonitoringConfig")
)

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"


def _parse_text(path: Path, message: Any, what: str) -> Any:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfigError(f"{what} {path} is not valid text format: {error}") from None
    return message


def read_model_server_config(path: Path) -> Any:
    """A ModelServerConfig from TF Serving's text format; only model_config_list is supported."""
    config = _parse_text(path, protos.ModelServerConfig(), "--model_config_file")
    if config.WhichOneof("config") == "custom_model_config":
        raise ConfigError(f"--model_config_file {path}: custom_model_config is not supported")
    validate_model_server_config(config, str(path))
    return config


def validate_model_server_config(config: Any, where: str) -> None:
    names = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ConfigError(f"{where}: a model config has no name")
        if model.name in names:
            raise ConfigError(f"{where}: model name {model.name!r} appears twice")
        names.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{where}: model {model.name!r} has no base_path")
        platform = model.model_platform or "tensorflow"
        from serving.modelserver.runtimes import PLATFORMS

        if platform not in PLATFORMS:
            raise ConfigError(
                f"{where}: model {model.name!r} has model_platform {platform!r}; supported: {', '.join(PLATFORMS)}"
            )
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            raise ConfigError(f"{where}: model {model.name!r} has a specific version policy with no versions")


def single_model_config(name: str, base_path: str) -> Any:
    config = protos.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = "tensorflow"
    return config


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters with its defaults filled in."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = max(1, os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int = 0
    pad_variable_length_inputs: bool = False


def read_batching_parameters(path: Path | None) -> BatchingOptions:
    if path is None:
        return BatchingOptions()
    params = _parse_text(path, BatchingParameters(), "--batching_parameters_file")
    defaults = BatchingOptions()

    def value(name: str, default: Any) -> Any:
        return getattr(params, name).value if params.HasField(name) else default

    options = BatchingOptions(
        max_batch_size=value("max_batch_size", defaults.max_batch_size),
        batch_timeout_micros=value("batch_timeout_micros", defaults.batch_timeout_micros),
        max_enqueued_batches=value("max_enqueued_batches", defaults.max_enqueued_batches),
        num_batch_threads=value("num_batch_threads", defaults.num_batch_threads),
        allowed_batch_sizes=tuple(params.allowed_batch_sizes),
        enable_large_batch_splitting=value("enable_large_batch_splitting", False),
        max_execution_batch_size=value("max_execution_batch_size", 0),
        pad_variable_length_inputs=params.pad_variable_length_inputs,
    )
    where = f"--batching_parameters_file {path}"
    if options.max_batch_size <= 0:
        raise ConfigError(f"{where}: max_batch_size must be positive")
    if options.num_batch_threads <= 0 or options.max_enqueued_batches <= 0 or options.batch_timeout_micros < 0:
        raise ConfigError(f"{where}: num_batch_threads and max_enqueued_batches must be positive")
    sizes = options.allowed_batch_sizes
    if sizes:
        if list(sizes) != sorted(set(sizes)) or sizes[0] <= 0:
            raise ConfigError(f"{where}: allowed_batch_sizes must be positive and strictly increasing")
        if sizes[-1] != options.max_batch_size:
            raise ConfigError(f"{where}: the last entry in allowed_batch_sizes must equal max_batch_size")
    return options


@dataclass(frozen=True)
class MonitoringOptions:
    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_METRICS_PATH


def read_monitoring_config(path: Path | None) -> MonitoringOptions:
    if path is None:
        return MonitoringOptions()
    config = _parse_text(path, MonitoringConfig(), "--monitoring_config_file")
    prometheus = config.prometheus_config
    return MonitoringOptions(prometheus.enable, prometheus.path or DEFAULT_METRICS_PATH)
