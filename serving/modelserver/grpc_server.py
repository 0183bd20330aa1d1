"""gRPC front end (grpc.aio): PredictionService, ModelService, health checking and reflection."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from serving import protos, tracing
from serving.errors import ServingError
from serving.modelserver.service import ModelServer

log = logging.getLogger("serving.modelserver")

# TF Serving's server accepts messages up to INT_MAX bytes in both directions; so does this one,
# unless --grpc_channel_arguments sets grpc.max_{receive,send}_message_length lower.
MAX_MESSAGE_BYTES = 2**31 - 1


def parse_channel_arguments(text: str) -> list[tuple[str, Any]]:
    """--grpc_channel_arguments: comma-separated key=value; integer values become ints."""
    arguments: list[tuple[str, Any]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        if not key or not _:
            raise ValueError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
        arguments.append((key.strip(), int(value) if value.strip().lstrip("-").isdigit() else value.strip()))
    return arguments


def server_options(channel_arguments: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    options: dict[str, Any] = {
        "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
        "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
        "grpc.so_reuseport": 0,
    }
    options.update(dict(channel_arguments))
    return list(options.items())


def _model_name(request: Any) -> str:
    if hasattr(request, "tasks"):
        return request.tasks[0].model_spec.name if request.tasks else ""
    if hasattr(request, "model_spec"):
        return str(request.model_spec.name)
    return ""


async def _outcome(task: asyncio.Future[Any]) -> str:
    """The status request_count records for a call whose client left: its own, once it ends."""
    try:
        await task
    except ServingError as error:
        return error.grpc_code.name
    except Exception:
        return "INTERNAL"
    return "OK"


class _Handlers:
    def __init__(self, server: ModelServer) -> None:
        self.server = server

    def wrap(self, api: str, call: Callable[[Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
        metrics = self.server.metrics

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, protos.Undecodable):  # bytes that are not the method's message
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.error.message)
            started = time.perf_counter()
            model_name = _model_name(request)
            status = "OK"
            task: asyncio.Future[Any] | None = None
            try:
                if tracing.enabled():
                    metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
                    with tracing.server_span(api, metadata, {"tensorgate.servable": model_name}):
                        task = asyncio.ensure_future(call(request))  # in the span's context
                        return await asyncio.shield(task)
                task = asyncio.ensure_future(call(request))
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                # The client went away. TF Serving does not notice (prediction_service_impl.cc never
                # looks at the call's cancellation): the request runs to its end and its outcome is
                # what request_count records; nobody is left to read the answer.
                if task is not None:
                    status = await _outcome(task)
                raise
            except ServingError as error:
                status = error.grpc_code.name
                await context.abort(error.grpc_code, error.message)
            except Exception:
                status = "INTERNAL"
                log.exception("%s failed", api)
                await context.abort(grpc.StatusCode.INTERNAL, f"{api} failed; see the server log")
            finally:
                metrics.request_count.inc(model_name, status)
                metrics.request_latency.observe((time.perf_counter() - started) * 1e6, model_name, api, "GRPC")

        return handler


def build_server(
    model_server: ModelServer, channel_arguments: Sequence[tuple[str, Any]]
) -> tuple[grpc.aio.Server, Any]:
    server = grpc.aio.server(options=server_options(channel_arguments))
    handlers = _Handlers(model_server)

    async def metadata(request: Any) -> Any:
        return model_server.metadata(request)

    async def status(request: Any) -> Any:
        return model_server.model_status(request)

    server.add_generic_rpc_handlers(
        (
            protos.PREDICTION_SERVICE.handler(
                {
                    "Predict": handlers.wrap("predict", model_server.predict),
                    "Classify": handlers.wrap("classify", model_server.classify),
                    "Regress": handlers.wrap("regress", model_server.regress),
                    "MultiInference": handlers.wrap("multi_inference", model_server.multi_inference),
                    "GetModelMetadata": handlers.wrap("get_model_metadata", metadata),
                },
            ),
            protos.MODEL_SERVICE.handler(
                {
                    "GetModelStatus": handlers.wrap("get_model_status", status),
                    "HandleReloadConfigRequest": handlers.wrap("reload_config", model_server.reload_config),
                },
            ),
        )
    )
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        protos.PREDICTION_SERVICE.name,
        protos.MODEL_SERVICE.name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server, pool=_ReflectionPool())  # type: ignore[arg-type]
    return server, health_servicer


class _ReflectionPool:
    """Answers reflection from our TF-free descriptor pool, and the health/reflection services from
    the default pool."""

    def __getattr__(self, name: str) -> Any:
        from google.protobuf import descriptor_pool

        def lookup(*args: Any) -> Any:
            try:
                return getattr(protos.POOL, name)(*args)
            except KeyError:
                return getattr(descriptor_pool.Default(), name)(*args)

        return lookup
