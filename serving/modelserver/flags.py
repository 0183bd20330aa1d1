"""tensorflow_model_server's command line, parsed as its flag library parses it.

TF Serving's ``main.cc`` declares its flags with ``tsl::Flag`` and parses them with ``Flags::Parse``
(``xla/tsl/util/command_line_flags.cc``): ``--name=value`` only (``--name`` alone for booleans), a
value that does not parse logs ``Couldn't interpret value V for flag N.`` and the process prints its
usage and exits 255, and an argument that names no flag is printed as ``unknown argument: ARG``
followed by the usage, after which the server starts anyway. This module does the same with the same
flag names, types and defaults. Flags this server honours are fields of ``Flags``; the others are
parsed, type-checked and reported as not honoured, one log line each.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("serving.modelserver")

PROGRAM = "python -m serving.modelserver"
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class FlagSpec:
    name: str
    kind: str  # int32 | int64 | bool | string | float
    default: Any
    help: str
    honoured: bool = True


_CORES = os.cpu_count() or 1

# In TF Serving's order (main.cc), then this server's own two; help texts in our words.
SPECS: tuple[FlagSpec, ...] = (
    FlagSpec("port", "int32", 8500, "gRPC port"),
    FlagSpec("grpc_socket_path", "string", "", "also serve gRPC on this UNIX socket"),
    FlagSpec("rest_api_port", "int32", 0, "REST port (0: no REST API); must differ from --port"),
    FlagSpec("rest_api_num_threads", "int32", 4 * _CORES, "REST threads (REST shares the model pool)", False),
    FlagSpec("rest_api_timeout_in_ms", "int32", 30000, "REST request timeout"),
    FlagSpec("rest_api_enable_cors_support", "bool", False, "CORS headers on REST answers"),
    FlagSpec("enable_batching", "bool", False, "batch concurrent requests"),
    FlagSpec("allow_version_labels_for_unavailable_models", "bool", False, "labels for versions not loaded", False),
    FlagSpec("batching_parameters_file", "string", "", "BatchingParameters text file"),
    FlagSpec("enable_per_model_batching_parameters", "bool", False, "per-model batching_params.pbtxt", False),
    FlagSpec("model_config_file", "string", "", "ModelServerConfig text file (then --model_name/_base_path unused)"),
    FlagSpec("model_config_file_poll_wait_seconds", "int32", 0, "re-read --model_config_file this often (0: never)"),
    FlagSpec("model_name", "string", "default", "name of the single model"),
    FlagSpec("model_base_path", "string", "", "base path of the single model"),
    FlagSpec("num_load_threads", "int32", 0, "model load threads", False),
    FlagSpec("num_unload_threads", "int32", 0, "model unload threads", False),
    FlagSpec("max_num_load_retries", "int32", 5, "retries of a failed load", False),
    FlagSpec("load_retry_interval_micros", "int64", 60_000_000, "wait between load retries", False),
    FlagSpec("file_system_poll_wait_seconds", "int32", 1, "scan base paths for new versions this often"),
    FlagSpec("flush_filesystem_caches", "bool", True, "flush file system caches after loads", False),
    FlagSpec("tensorflow_session_parallelism", "int64", 0, "intra and inter-op threads (0: their own flags)"),
    FlagSpec("tensorflow_session_config_file", "string", "", "TensorFlow ConfigProto text file", False),
    FlagSpec("tensorflow_intra_op_parallelism", "int64", 0, "TensorFlow intra-op threads (0: 1)"),
    FlagSpec("tensorflow_inter_op_parallelism", "int64", 0, "TensorFlow inter-op threads (0: cores)"),
    FlagSpec("use_alts_credentials", "bool", False, "Google ALTS credentials", False),
    FlagSpec("ssl_config_file", "string", "", "SSLConfig text file", False),
    FlagSpec("platform_config_file", "string", "", "PlatformConfigMap text file", False),
    FlagSpec("per_process_gpu_memory_fraction", "float", 0.0, "GPU memory fraction", False),
    FlagSpec("saved_model_tags", "string", "serve", "MetaGraph tags to load (only serve)", False),
    FlagSpec("grpc_channel_arguments", "string", "", "gRPC server options, k=v,k=v"),
    FlagSpec("grpc_max_threads", "int32", 4 * _CORES, "gRPC threads", False),
    FlagSpec("enable_model_warmup", "bool", True, "replay assets.extra/tf_serving_warmup_requests"),
    FlagSpec("num_request_iterations_for_warmup", "int32", 0, "times each warmup record is replayed (if > 0)"),
    FlagSpec("version", "bool", False, "print the version and exit"),
    FlagSpec("monitoring_config_file", "string", "", "MonitoringConfig text file"),
    FlagSpec("remove_unused_fields_from_bundle_metagraph", "bool", True, "trim loaded MetaGraphs", False),
    FlagSpec("prefer_tflite_model", "bool", False, "load model.tflite where a version has one"),
    FlagSpec("num_tflite_pools", "int32", _CORES, "TFLite interpreter pools"),
    FlagSpec("num_tflite_interpreters_per_pool", "int32", 1, "TFLite interpreters per pool"),
    FlagSpec("enable_signature_method_name_check", "bool", False, "classify/regress check method_name"),
    FlagSpec("xla_cpu_compilation_enabled", "bool", False, "XLA:CPU JIT", False),
    FlagSpec("xla_gpu_compilation_enabled", "bool", False, "XLA:CPU and XLA:GPU JIT", False),
    FlagSpec("enable_profiler", "bool", True, "TensorFlow profiler service", False),
    FlagSpec("thread_pool_factory_config_file", "string", "", "ThreadPoolConfig text file", False),
    FlagSpec("mixed_precision", "string", "", "mixed precision mode", False),
    FlagSpec("skip_initialize_tpu", "bool", False, "skip TPU initialisation", False),
    FlagSpec("enable_grpc_healthcheck_service", "bool", False, "grpc.health.v1 (always on here)", False),
    FlagSpec("enable_serialization_as_tensor_content", "bool", False, "answers in tensor_content", False),
    # This server's own (not TF Serving flags):
    FlagSpec("rest_api_max_body_bytes", "int64", 64 * 1024 * 1024, "largest REST body (413 above)"),
    FlagSpec("shutdown_grace_seconds", "float", 10.0, "after SIGTERM/SIGINT, time for in-flight requests"),
    FlagSpec("bind_address", "string", "0.0.0.0", "address both APIs listen on (TF Serving: all)"),
    FlagSpec("tracing_otlp_endpoint", "string", "", "OpenTelemetry OTLP/gRPC collector (empty: no tracing)"),
    FlagSpec("tracing_sample_ratio", "float", 0.1, "share of requests traced when the caller did not decide"),
)
# Not honoured, but read at start like TF Serving reads them (a broken file stops both servers).
_READ_ANYWAY = ("tensorflow_session_config_file", "ssl_config_file", "platform_config_file")


@dataclass
class Flags:
    """The flags this server acts on, with TF Serving's defaults (``SPECS`` gives the same defaults;
    a test keeps the two equal). Config files named by flags it does not honour are still read at
    start, as TF Serving reads them, so a broken one fails here too."""

    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    enable_batching: bool = False
    batching_parameters_file: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    model_name: str = "default"
    model_base_path: str = ""
    file_system_poll_wait_seconds: int = 1
    tensorflow_session_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    ssl_config_file: str = ""
    platform_config_file: str = ""
    grpc_channel_arguments: str = ""
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    version: bool = False
    monitoring_config_file: str = ""
    prefer_tflite_model: bool = False
    num_tflite_pools: int = _CORES
    num_tflite_interpreters_per_pool: int = 1
    enable_signature_method_name_check: bool = False
    rest_api_max_body_bytes: int = 64 * 1024 * 1024
    shutdown_grace_seconds: float = 10.0
    # Not a TF Serving flag (it always listens on every address): the address both APIs bind, so
    # several servers can share one port on distinct loopback addresses, as pods behind one Service.
    bind_address: str = "0.0.0.0"
    # Not TF Serving flags: OpenTelemetry traces to an OTLP/gRPC collector (empty endpoint: off); the
    # ratio applies to requests whose caller did not decide (a traced gateway request is always followed).
    tracing_otlp_endpoint: str = ""
    tracing_sample_ratio: float = 0.1
    ignored: list[str] = field(default_factory=list)  # TF Serving flags given that this server does not honour


@dataclass
class ParsedCommandLine:
    flags: Flags
    ok: bool  # False: a value did not parse, or --help (TF Serving prints the usage and exits 255)
    unknown: list[str]


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _convert(spec: FlagSpec, text: str) -> Any:
    """absl::SimpleAtoi / SimpleAtof / the bool words; None when the value does not parse."""
    if spec.kind in ("int32", "int64"):
        text = text.strip(" \t\n\v\f\r")
        if not _INTEGER.fullmatch(text):
            return None
        low, high = INT32 if spec.kind == "int32" else INT64
        number = int(text)
        return number if low <= number <= high else None
    if spec.kind == "float":
        try:
            return float(text.strip(" \t\n\v\f\r"))
        except ValueError:
            return None
    if spec.kind == "bool":
        lowered = text.lower()
        return True if lowered in ("true", "1") else False if lowered in ("false", "0") else None
    return text


def _match(spec: FlagSpec, argument: str) -> tuple[bool, Any]:
    """Flag::Parse: (found, value); value None with found True means it did not parse."""
    prefix = f"--{spec.name}"
    if not argument.startswith(prefix):
        return False, None
    rest = argument[len(prefix) :]
    if spec.kind == "bool" and rest == "":
        return True, True
    if not rest.startswith("="):
        return False, None
    value = _convert(spec, rest[1:])
    if value is None:
        log.error("Couldn't interpret value %s for flag %s.", rest[1:], spec.name)
    return True, value


def parse(argv: Sequence[str]) -> ParsedCommandLine:
    flags = Flags()
    ok = True
    unknown: list[str] = []
    for position, argument in enumerate(argv):
        if argument == "--":
            unknown.extend(argv[position:])
            break
        for spec in SPECS:
            found, value = _match(spec, argument)
            if found:
                if value is None:
                    ok = False
                elif spec.honoured:
                    setattr(flags, spec.name, value)
                else:
                    if spec.name in _READ_ANYWAY:
                        setattr(flags, spec.name, value)
                    if spec.name not in flags.ignored:
                        flags.ignored.append(spec.name)
                break
        else:
            unknown.append(argument)
    if unknown and unknown[0] == "--help":
        ok = False
    return ParsedCommandLine(flags, ok, unknown)


def usage() -> str:
    """Flags::Usage's layout: one line per flag with its default, type and help."""
    lines = [f"usage: {PROGRAM}", "Flags:"]
    for spec in SPECS:
        default = spec.default
        if spec.kind == "string":
            shown = f'--{spec.name}="{default}"'
        elif spec.kind == "bool":
            shown = f"--{spec.name}={'true' if default else 'false'}"
        elif spec.kind == "float":
            shown = f"--{spec.name}={default:f}"
        else:
            shown = f"--{spec.name}={default}"
        lines.append(f"\t{shown:<33}\t{spec.kind}\t{spec.help}")
    return "\n".join(lines) + "\n"


def report_ignored(flags: Flags) -> None:
    for name in flags.ignored:
        log.warning("Flag --%s is accepted for compatibility with tensorflow_model_server but not honoured", name)
