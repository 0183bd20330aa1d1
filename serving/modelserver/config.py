"""TF Serving's config files: model_config_list, batching parameters and monitoring config.

``ModelServerConfig`` comes from tensorflow-serving-api's descriptors (``serving.protos``).
``BatchingParameters`` (session_bundle_config.proto) and ``MonitoringConfig`` (monitoring_config.proto)
are not in that wheel, so this module builds a small descriptor for each in code, with TF Serving's
field names and numbers, and parses their text format with google.protobuf's own text_format.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from serving import protos
from serving.modelserver import textformat

log = logging.getLogger("serving.modelserver")


class ConfigError(Exception):
    """A config file or flag combination the server cannot start with, reported as TF Serving does:
    ``logged`` holds the lines its protobuf parser logs first (one per text-format error), then the
    process prints ``Failed to start server. Error: <code>: <message>`` (server.cc, main.cc)."""

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT", logged: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.logged = tuple(logged)

    def __str__(self) -> str:
        return "; ".join([self.message, *self.logged])


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


_ERRNO_CODES = {errno.ENOENT: "NOT_FOUND", errno.EACCES: "PERMISSION_DENIED", errno.EISDIR: "FAILED_PRECONDITION"}


def parse_text_file(path: Path, message: Any, build: bool = True) -> Any:
    """Read ``path`` into ``message`` as tensorflow_model_server's ParseProtoTextFile does: an unreadable
    file is ``<path>; <strerror>``, a text-format mistake is protobuf's C++ error lines followed by
    ``Invalid protobuf file: '<path>'``. With ``build`` false the text is only checked (for files whose
    google.protobuf.Any contents name types this server does not know)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        code = _ERRNO_CODES.get(error.errno or 0, "UNKNOWN")
        raise ConfigError(f"{path}; {error.strerror}", code) from None
    type_name = message.DESCRIPTOR.full_name
    problems = textformat.check(data, message.DESCRIPTOR, skip_unknown_any=not build)
    if not problems and build:
        try:
            text_format.Parse(data, message, descriptor_pool=message.DESCRIPTOR.file.pool)
        except (text_format.ParseError, UnicodeDecodeError) as error:  # C++ accepts what Python does not
            line = error.GetLine() if isinstance(error, text_format.ParseError) else None
            column = error.GetColumn() if isinstance(error, text_format.ParseError) else None
            text = re.sub(r"^\d+(:\d+)? : ", "", str(error))
            problems = [textformat.ParseProblem((line or 1) - 1, (column or 1) - 1, text)]
    if problems:
        logged = [problem.log_line(type_name) for problem in problems]
        raise ConfigError(f"Invalid protobuf file: '{path}'", logged=logged)
    return message


def read_model_server_config(path: Path) -> Any:
    """A ModelServerConfig from TF Serving's text format; only model_config_list is supported."""
    config = parse_text_file(path, protos.ModelServerConfig())
    if config.WhichOneof("config") == "custom_model_config":
        # server.cc LoadCustomModelConfig: LOG(FATAL) (TF Serving aborts; this server exits)
        raise ConfigError("ModelServer does not yet support custom model config.", "UNIMPLEMENTED")
    validate_model_server_config(config)
    return config


def model_platform(model: Any) -> str:
    """server_core.cc GetPlatform: model_platform, or the deprecated model_type; one of them is required."""
    if model.model_type != 0:  # MODEL_TYPE_UNSPECIFIED
        log.warning("Deprecated ModelServerConfig::model_type field used. Prefer ModelServerConfig::model_platform.")
        if model.model_platform:
            raise ConfigError(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and ModelServerConfig::model_platform."
            )
        if model.model_type != 1:  # TENSORFLOW
            raise ConfigError(f"ModelServerConfig::model_type choice {model.model_type} not supported.")
        return "tensorflow"
    if not model.model_platform:
        raise ConfigError(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor ModelServerConfig::model_platform."
        )
    return str(model.model_platform)


def validate_model_server_config(config: Any) -> None:
    """server_core.cc ValidateModelConfigList and CreateStoragePathRoutes, in TF Serving's words, plus
    two checks of this server's own (a name and a base path are required)."""
    from serving.modelserver.runtimes import PLATFORMS

    names = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise ConfigError(f"Illegal to list model {model.name} multiple times in config list")
        names.add(model.name)
    for model in config.model_config_list.config:
        platform = model_platform(model)
        if platform not in PLATFORMS:
            raise ConfigError(f"Model {model.name} requests unsupported platform {platform}")
        if not model.name:
            raise ConfigError("A model config has no name")
        if not model.base_path:
            raise ConfigError(f"Model {model.name} has no base_path")
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            raise ConfigError(f"Model {model.name} has a specific version policy with no versions")


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
    params = parse_text_file(path, BatchingParameters())
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
    # TF Serving checks these when it builds a model's batch queue (shared_batch_scheduler.h,
    # batching_session.cc); here they stop the start, since every model would fail the same way.
    checks = (
        (options.max_batch_size <= 0, f"input_batch_size_limit must be positive; was {options.max_batch_size}"),
        (options.num_batch_threads <= 0, f"num_batch_threads must be positive; was {options.num_batch_threads}"),
        (
            options.batch_timeout_micros < 0,
            f"batch_timeout_micros must be non-negative; was {options.batch_timeout_micros}",
        ),
        (
            options.max_enqueued_batches <= 0,
            f"max_enqueued_batches must be positive; was {options.max_enqueued_batches}",
        ),
    )
    for failed, message in checks:
        if failed:
            raise ConfigError(message)
    sizes = options.allowed_batch_sizes
    if sizes:
        if any(later <= earlier for earlier, later in itertools.pairwise(sizes)):
            raise ConfigError("allowed_batch_sizes entries must be monotonically increasing")
        if options.enable_large_batch_splitting and sizes[-1] > options.max_batch_size:
            raise ConfigError(
                "Last entry in allowed_batch_sizes must be less than or equal to max_batch_size; "
                f"last entry was {sizes[-1]}; expected {options.max_batch_size}"
            )
        if not options.enable_large_batch_splitting and sizes[-1] != options.max_batch_size:
            raise ConfigError(
                "Last entry in allowed_batch_sizes must match max_batch_size; "
                f"last entry was {sizes[-1]}; expected {options.max_batch_size}"
            )
    return options


@dataclass(frozen=True)
class MonitoringOptions:
    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_METRICS_PATH


def read_monitoring_config(path: Path | None) -> MonitoringOptions:
    if path is None:
        return MonitoringOptions()
    config = parse_text_file(path, MonitoringConfig())
    prometheus = config.prometheus_config
    return MonitoringOptions(prometheus.enable, prometheus.path or DEFAULT_METRICS_PATH)
