"""tensorflow_model_server's command line: TF's ``--flag=value`` syntax, its flag names and defaults.

Flags this server honours are typed fields of ``Flags``; TF Serving flags it accepts but cannot honour
(TPU, SSL, session tuning ...) are parsed and reported in one log line each; unknown flags stop the
process, as TF Serving's parser does.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger("serving.modelserver")


@dataclass
class Flags:
    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    prefer_tflite_model: bool = False
    grpc_channel_arguments: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    tensorflow_session_parallelism: int = 0
    num_tflite_interpreters_per_pool: int = 1
    num_tflite_pools: int = 1
    version: bool = False
    enable_signature_method_name_check: bool = False
    # Not a TF Serving flag: the REST body limit (TF Serving has none; 413 above it).
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    # Not a TF Serving flag (it always listens on every address): the address both APIs bind, so
    # several servers can share one port on distinct loopback addresses, as pods behind one Service.
    bind_address: str = "0.0.0.0"
    # Not TF Serving flags: OpenTelemetry traces to an OTLP/gRPC collector (empty endpoint: off); the
    # ratio applies to requests whose caller did not decide (a traced gateway request is always followed).
    tracing_otlp_endpoint: str = ""
    tracing_sample_ratio: str = "0.1"
    ignored: list[str] = field(default_factory=list)


# TF Serving flags accepted for compatibility; each one given is logged as not honoured.
IGNORED_FLAGS = {
    "rest_api_num_threads": "int",
    "allow_version_labels_for_unavailable_models": "bool",
    "num_load_threads": "int",
    "num_unload_threads": "int",
    "max_num_load_retries": "int",
    "load_retry_interval_micros": "int",
    "flush_filesystem_caches": "bool",
    "tensorflow_session_config_file": "str",
    "ssl_config_file": "str",
    "use_alts_credentials": "bool",
    "platform_config_file": "str",
    "per_process_gpu_memory_fraction": "str",
    "saved_model_tags": "str",
    "grpc_max_threads": "int",
    "remove_unused_fields_from_bundle_metagraph": "bool",
    "xla_cpu_compilation_enabled": "bool",
    "enable_profiler": "bool",
    "mixed_precision": "str",
    "skip_initialize_tpu": "bool",
    "thread_pool_factory_config_file": "str",
    "use_tflite_model": "bool",
    "enable_grpc_healthcheck_service": "bool",
    "tflite_num_threads": "int",
    "enable_servable_state_monitor": "bool",
}


class FlagError(Exception):
    pass


def _convert(name: str, kind: str, value: str | None) -> object:
    if kind == "bool":
        if value is None:
            return True
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise FlagError(f"Illegal value '{value}' specified for bool flag '{name}'")
    if value is None:
        raise FlagError(f"Flag '{name}' needs a value: --{name}=VALUE")
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise FlagError(f"Illegal value '{value}' specified for int flag '{name}'") from None
    return value


def parse(argv: Sequence[str]) -> Flags:
    flags = Flags()
    kinds = {
        f.name: {"int": "int", "bool": "bool", "str": "str"}[str(f.type)]
        for f in dataclasses.fields(Flags)
        if f.name != "ignored"
    }
    for argument in argv:
        if not argument.startswith("-"):
            raise FlagError(f"Unexpected argument: {argument} (flags take the form --name=value)")
        name, equals, value = argument.lstrip("-").partition("=")
        raw = value if equals else None
        if name in kinds:
            setattr(flags, name, _convert(name, kinds[name], raw))
        elif name in IGNORED_FLAGS:
            _convert(name, IGNORED_FLAGS[name], raw)
            flags.ignored.append(name)
        else:
            raise FlagError(f"Unknown command line flag '{name}'")
    try:
        ratio = float(flags.tracing_sample_ratio)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise FlagError(f"--tracing_sample_ratio={flags.tracing_sample_ratio} is not a number within 0..1")
    if flags.model_config_file and flags.model_base_path:
        raise FlagError("--model_base_path and --model_config_file are mutually exclusive")
    if not flags.model_config_file and not flags.model_base_path and not flags.version:
        raise FlagError("Both server_model_config_file and model_base_path are empty!")
    if flags.batching_parameters_file and not flags.enable_batching:
        log.warning("--batching_parameters_file is ignored because --enable_batching is not set")
    return flags


def report_ignored(flags: Flags) -> None:
    for name in flags.ignored:
        log.warning("Flag --%s is accepted for compatibility with tensorflow_model_server but not honoured", name)
    if flags.tensorflow_session_parallelism:
        log.warning("Flag --tensorflow_session_parallelism is not honoured; use the intra/inter-op flags")
