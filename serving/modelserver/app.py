"""Assembles the model server from its flags and runs gRPC and REST in one event loop."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import uvicorn

from serving import tracing
from serving.http_timeouts import timed_http_protocol
from serving.modelserver import config as config_files
from serving.modelserver import inference, startup
from serving.modelserver.cors import Cors
from serving.modelserver.flags import Flags
from serving.modelserver.grpc_server import build_server, parse_channel_arguments
from serving.modelserver.manager import ManagerOptions, ServableManager
from serving.modelserver.metrics import Metrics
from serving.modelserver.rest import RestApp
from serving.modelserver.runtimes import RuntimeOptions
from serving.modelserver.service import ModelServer

log = logging.getLogger("serving.modelserver")
SHUTDOWN_GRACE_S = 10.0  # default of --shutdown_grace_seconds (the gateway's default too)


def worker_threads() -> int:
    """Model calls and request decoding share one pool sized to the machine (2 x cores, at least 4)."""
    return max(4, 2 * (os.cpu_count() or 1))


def runtime_options(flags: Flags) -> RuntimeOptions:
    """TensorFlow's thread pools. Unset (0), intra-op is 1 and inter-op one per core: measured on the
    served models (docs/modelserver.md, "Threads"), splitting each op over the cores costs more in thread
    hand-offs than it gains, at batch 1 and at 32, while inter-op threads still run a model's parallel
    branches (the mirror image, the two LSTM directions) at once. TF Serving's 0 lets TensorFlow pick (one
    per core for both); set the flags to the cores for one client sending large batches to a model
    without parallel branches."""
    cores = os.cpu_count() or 1
    session = flags.tensorflow_session_parallelism
    return RuntimeOptions(
        intra_op_threads=flags.tensorflow_intra_op_parallelism or session or 1,
        inter_op_threads=flags.tensorflow_inter_op_parallelism or session or cores,
        interpreters=max(1, flags.num_tflite_interpreters_per_pool * flags.num_tflite_pools),
    )


async def serve(flags: Flags) -> None:
    checked = startup.read(flags)
    model_config, batching, monitoring = checked.model_config, checked.batching, checked.monitoring
    channel_arguments = parse_channel_arguments(flags.grpc_channel_arguments)
    warmup_iterations = flags.num_request_iterations_for_warmup or 1  # TF Serving: used only if > 0

    inference.METHOD_NAME_CHECK["enabled"] = flags.enable_signature_method_name_check
    metrics = Metrics()
    tracing.configure(flags.tracing_otlp_endpoint, float(flags.tracing_sample_ratio), "tensorgate-modelserver")
    executor = ThreadPoolExecutor(max_workers=worker_threads(), thread_name_prefix="model")
    manager_options = ManagerOptions(
        runtime=runtime_options(flags),
        prefer_tflite=flags.prefer_tflite_model,
        enable_warmup=flags.enable_model_warmup,
        warmup_iterations=warmup_iterations,
    )
    holder: dict[str, ModelServer] = {}
    manager = ServableManager(manager_options, metrics, warmup=lambda entry: holder["server"].warmup(entry))
    model_server = ModelServer(manager, executor, metrics, batching, warmup_iterations)
    holder["server"] = model_server

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")  # not waited for on a stop
    loading: asyncio.Future[Any] = asyncio.ensure_future(loop.run_in_executor(loader, manager.set_config, model_config))
    stop_requested: asyncio.Future[Any] = asyncio.ensure_future(stopped.wait())
    await asyncio.wait({loading, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
    if not loading.done():
        raise StopDuringLoad  # a load cannot be interrupted; the process exits without waiting for it
    stop_requested.cancel()
    loading.result()
    manager.start_polling(flags.file_system_poll_wait_seconds)
    stop_config_poll = threading.Event()
    if flags.model_config_file and flags.model_config_file_poll_wait_seconds > 0:
        _poll_config_file(
            manager,
            Path(flags.model_config_file),
            flags.model_config_file_poll_wait_seconds,
            stop_config_poll,
        )

    grpc_server, health = build_server(model_server, channel_arguments)
    addresses = [f"{_host(flags.bind_address)}:{flags.port}"] if flags.port else []
    addresses += [f"unix:{flags.grpc_socket_path}"] if flags.grpc_socket_path else []
    try:
        for address in addresses:
            grpc_server.add_insecure_port(address)
    except RuntimeError as error:  # server.cc: BuildAndStart() returned no server
        log.error("gRPC could not listen: %s", error)
        raise config_files.ConfigError("Failed to BuildAndStart gRPC server") from None
    await grpc_server.start()
    await health.set("", _serving_status())
    for name in (*manager.model_names(), "tensorflow.serving.PredictionService"):
        await health.set(name, _serving_status())
    if flags.port:
        log.info("Running gRPC ModelServer at %s:%d ...", _host(flags.bind_address), flags.port)
    if flags.grpc_socket_path:
        log.info("Running gRPC ModelServer at UNIX socket %s ...", flags.grpc_socket_path)

    rest_server = None
    rest_task: asyncio.Task[None] | None = None
    if flags.rest_api_port and flags.rest_api_port == flags.port:
        log.error(
            "server_options.http_port cannot be same as grpc_port. Please use a different port for "
            "HTTP/REST API. Skipped exporting HTTP/REST API."
        )
    elif flags.rest_api_port:
        metrics_path = monitoring.prometheus_path if monitoring.prometheus_enabled else None
        app: Any = RestApp(model_server, flags.rest_api_timeout_in_ms, flags.rest_api_max_body_bytes, metrics_path)
        if flags.rest_api_enable_cors_support:
            app = Cors(app)
        if tracing.enabled():
            app = tracing.HttpSpans(app)
        rest_config = uvicorn.Config(
            app,
            host=flags.bind_address,
            port=flags.rest_api_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            interface="asgi3",  # tracing.HttpSpans calls the app without a coroutine of its own
            timeout_graceful_shutdown=math.ceil(flags.shutdown_grace_seconds),
            # request headers get the REST timeout too (uvicorn has none: a slow client held on forever)
            http=timed_http_protocol(flags.rest_api_timeout_in_ms / 1000 if flags.rest_api_timeout_in_ms > 0 else 3600),
        )
        rest_server = uvicorn.Server(rest_config)
        rest_server.install_signal_handlers = lambda: None  # type: ignore[attr-defined,method-assign]
        rest_task = asyncio.create_task(_serve_rest(rest_server))
        while not rest_server.started and not rest_task.done():
            await asyncio.sleep(0.01)
        if rest_task.done():  # server.cc: gRPC keeps serving without REST
            log.error("Failed to start HTTP Server at localhost:%d", flags.rest_api_port)
            rest_server, rest_task = None, None
        else:
            log.info("Exporting HTTP/REST API at:localhost:%d ...", flags.rest_api_port)
    await stopped.wait()
    log.info("Shutting down")
    stop_config_poll.set()
    # Both fronts stop accepting at once and drain what is in flight (the REST task was not awaited
    # before: in-flight REST requests were cut off and their model calls cancelled).
    draining: list[Any] = [grpc_server.stop(grace=flags.shutdown_grace_seconds)]
    if rest_server is not None and rest_task is not None:
        rest_server.should_exit = True
        draining.append(rest_task)
    await asyncio.gather(*draining)
    manager.stop()
    executor.shutdown(wait=False, cancel_futures=True)
    tracing.shutdown()


async def _serve_rest(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot listen; gRPC keeps serving, as in TF Serving
        log.error("REST API could not listen on port %d", server.config.port)


def _host(address: str) -> str:
    """An address as gRPC writes it in ``host:port`` (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


class StopDuringLoad(Exception):
    """SIGINT / SIGTERM arrived while the initial models were loading."""


def _serving_status() -> Any:
    from grpc_health.v1 import health_pb2

    return health_pb2.HealthCheckResponse.SERVING


def _poll_config_file(manager: ServableManager, path: Path, seconds: int, stop: threading.Event) -> None:
    last = path.read_bytes()

    def loop() -> None:
        nonlocal last
        while not stop.wait(seconds):
            try:
                current = path.read_bytes()
            except OSError as error:
                log.error("Failed to read ModelServerConfig file: %s; %s", path, error.strerror)
                continue
            if current == last:
                continue
            try:  # a bad edit keeps the current config, in server.cc's words
                new_config = config_files.read_model_server_config(path)
            except config_files.ConfigError as error:
                for line in error.logged:
                    log.error("%s", line)
                log.error("Failed to read ModelServerConfig file: %s", error.message)
                continue
            try:
                manager.set_config(new_config)
            except Exception as error:
                log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", error)
                continue
            last = current
            log.info("Reloaded model config from %s", path)

    threading.Thread(target=loop, name="config-poller", daemon=True).start()
