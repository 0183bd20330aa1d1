"""What tensorflow_model_server checks and reads before it serves (``server.cc`` Server::BuildAndStart),
in its order and its words. A failure is a ``ConfigError``; ``__main__`` prints it as TF Serving's
``main.cc`` does (``Failed to start server. Error: <code>: <message>``, exit 255).

Differences kept on purpose (docs/modelserver.md): every file is read before any model loads, so a
broken monitoring or SSL config file fails in a second rather than after the models have loaded; and
the files of flags this server does not honour (SSL, platform and session config) are only checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from serving import protos
from serving.modelserver import config as config_files
from serving.modelserver.config import BatchingOptions, ConfigError, MonitoringOptions
from serving.modelserver.flags import Flags


@dataclass(frozen=True)
class Startup:
    model_config: Any  # tensorflow.serving.ModelServerConfig
    batching: BatchingOptions | None
    monitoring: MonitoringOptions


def read(flags: Flags) -> Startup:
    if not 0.0 <= flags.tracing_sample_ratio <= 1.0:  # this server's own flag, checked in its own words
        raise ConfigError(f"--tracing_sample_ratio={flags.tracing_sample_ratio:g} is not a number within 0..1")
    if flags.port == 0 and not flags.grpc_socket_path:
        raise ConfigError("server_options.grpc_port is not set.")
    if not flags.model_base_path and not flags.model_config_file:
        raise ConfigError("Both server_options.model_base_path and server_options.model_config_file are empty!")
    if flags.model_config_file:  # --model_name and --model_base_path are then ignored
        model_config = config_files.read_model_server_config(Path(flags.model_config_file))
    else:
        model_config = config_files.single_model_config(flags.model_name, flags.model_base_path)
        config_files.validate_model_server_config(model_config)
    batching = None
    if not flags.platform_config_file:  # with a platform config, TF Serving ignores the batching flags
        if flags.enable_batching:
            path = Path(flags.batching_parameters_file) if flags.batching_parameters_file else None
            batching = config_files.read_batching_parameters(path)
        elif flags.batching_parameters_file:
            raise ConfigError(
                "server_options.batching_parameters_file is set without setting server_options.enable_batching to true."
            )
        if (
            flags.tensorflow_intra_op_parallelism > 0
            and flags.tensorflow_inter_op_parallelism > 0
            and flags.tensorflow_session_parallelism > 0
        ):
            raise ConfigError(
                "Either configure server_options.tensorflow_session_parallelism or "
                "(server_options.tensorflow_intra_op_parallelism, "
                "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all."
            )
        if flags.tensorflow_session_config_file:
            config_files.parse_text_file(
                Path(flags.tensorflow_session_config_file), protos.message_class("tensorflow.ConfigProto")()
            )
    else:
        config_files.parse_text_file(Path(flags.platform_config_file), _PLATFORM_CONFIG_MAP(), build=False)
    if flags.ssl_config_file:
        config_files.parse_text_file(Path(flags.ssl_config_file), _SSL_CONFIG())
    monitoring = MonitoringOptions()
    if flags.rest_api_port and flags.rest_api_port != flags.port and flags.monitoring_config_file:
        monitoring = config_files.read_monitoring_config(Path(flags.monitoring_config_file))
    return Startup(model_config, batching, monitoring)


def _ssl_and_platform_messages() -> tuple[Any, Any]:
    """SSLConfig (config/ssl_config.proto) built in code, PlatformConfigMap from the wheel's pool."""
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorgate/tfs_ssl_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    message = file.message_type.add(name="SSLConfig")
    kinds = descriptor_pb2.FieldDescriptorProto
    for number, name in enumerate(("server_key", "server_cert", "custom_ca"), start=1):
        message.field.add(name=name, number=number, type=kinds.TYPE_STRING, label=kinds.LABEL_OPTIONAL)
    message.field.add(name="client_verify", number=4, type=kinds.TYPE_BOOL, label=kinds.LABEL_OPTIONAL)
    pool.Add(file)
    ssl = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.SSLConfig"))
    return ssl, protos.message_class("tensorflow.serving.PlatformConfigMap")


_SSL_CONFIG, _PLATFORM_CONFIG_MAP = _ssl_and_platform_messages()
