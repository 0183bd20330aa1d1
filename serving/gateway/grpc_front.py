"""The gRPC front on 8001: TF Serving's PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus), the Open Inference Protocol's GRPCInferenceService (``grpc_v2``), plus gRPC health
checking and reflection.

Every method goes through ``_guarded``, the front's one interceptor: API key, request id (read from
``x-request-id`` metadata or made, sent back as trailing metadata and on to the upstream), deadline
(the caller's, capped by the config), ServingError -> status code, metrics and the access log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import _async as health_aio  # what grpc_health.v1.health.aio re-exports
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from serving import protos, tracing
from serving.errors import ServingError, Unimplemented
from serving.gateway.auth import ApiKeys
from serving.gateway.config import Settings
from serving.gateway.context import CallContext, new_request_id
from serving.gateway.grpc_v2 import PUBLIC, InferenceServicer
from serving.gateway.service import Gateway
from serving.gateway.upstream import channel_options
from serving.gateway.v2 import V2
from serving.predict import Predict

log = logging.getLogger("tensorgate.gateway.grpc")

Method = Callable[[Any, CallContext], Awaitable[Any]]
Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
SERVICES = (protos.PREDICTION_SERVICE.name, protos.MODEL_SERVICE.name, protos.INFERENCE_SERVICE.name)


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    """TF Serving's and the v2 protocol's descriptors plus health's, so reflection can describe every
    service we serve."""
    pool = descriptor_pool.DescriptorPool()
    for path in (protos.DESCRIPTOR_SET_PATH, protos.INFERENCE_SET_PATH):
        for file_proto in descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()).file:
            pool.Add(file_proto)
    health_file = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(health_file)
    pool.Add(health_file)
    return pool


class GrpcFront:
    def __init__(self, gateway: Gateway, settings: Settings, v2: V2 | None = None) -> None:
        self._gateway = gateway
        self._settings = settings
        self._keys = ApiKeys(settings.api_keys, settings.api_key_header)
        self._request_key = settings.request_key_header.lower()
        self._request_s = settings.timeouts.request_s
        self._max_tensor_bytes = settings.channel.max_message_bytes
        options = channel_options(settings)[:2]
        if settings.server.workers > 1:  # every worker binds the port (gRPC's Linux default, made explicit)
            options.append(("grpc.so_reuseport", 1))
        self.server = grpc.aio.server(options=options)
        self.health = health_aio.HealthServicer()
        self.port = 0
        self._stopping: asyncio.Future[None] | None = None
        prediction, model, inference = SERVICES
        v2_methods = InferenceServicer(v2 or V2(gateway)).methods()
        self.server.add_generic_rpc_handlers(
            (
                protos.PREDICTION_SERVICE.handler(
                    self._with_unimplemented(
                        protos.PREDICTION_SERVICE,
                        {
                            "Predict": self._guarded("predict", f"/{prediction}/Predict", self._predict),
                            "GetModelMetadata": self._guarded(
                                "metadata", f"/{prediction}/GetModelMetadata", gateway.metadata
                            ),
                        },
                    )
                ),
                protos.MODEL_SERVICE.handler(
                    self._with_unimplemented(
                        protos.MODEL_SERVICE,
                        {"GetModelStatus": self._guarded("status", f"/{model}/GetModelStatus", gateway.status)},
                    )
                ),
                protos.INFERENCE_SERVICE.handler(
                    self._with_unimplemented(
                        protos.INFERENCE_SERVICE,
                        {
                            name: self._guarded(
                                label, f"/{inference}/{name}", method, protocol="v2-grpc", public=name in PUBLIC
                            )
                            for name, (label, method) in v2_methods.items()
                        },
                        protocol="v2-grpc",
                    )
                ),
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server, pool=_reflection_pool()
        )

    async def _predict(self, request: Any, call: CallContext) -> Any:
        decoded = Predict.from_proto(request, self._max_tensor_bytes)
        prediction = await self._gateway.predict(decoded, call)
        return prediction.to_proto()

    async def start(self) -> None:
        address = f"{self._settings.host}:{self._settings.grpc_port}"
        self.port = self.server.add_insecure_port(address)
        await self.server.start()
        await self._set_health(self._gateway.catalog.readiness()[0])
        self._gateway.catalog.listeners.append(self._set_health)
        log.info("gRPC front listening on %s", self.port)

    async def stop(self, grace: float) -> None:
        """Stop accepting calls, give in-flight ones ``grace`` seconds; safe to call twice."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)

    async def _set_health(self, ready: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", *SERVICES):
            await self.health.set(service, status)

    def _with_unimplemented(
        self, service: protos.Service, handlers: dict[str, Handler], protocol: str = "grpc"
    ) -> dict[str, Handler]:
        """Every other method of ``service`` answers UNIMPLEMENTED, after the same key check as the rest
        (so a caller without a key learns nothing, and gets UNAUTHENTICATED, from every method)."""
        for method in service.methods:
            if method.name not in handlers:
                message = f"The gateway does not serve {service.name}/{method.name}"

                async def unimplemented(request: Any, call: CallContext, message: str = message) -> Any:
                    raise Unimplemented(message)

                route = f"/{service.name}/{method.name}"
                handlers[method.name] = self._guarded(method.name.lower(), route, unimplemented, protocol)
        return handlers

    def _guarded(self, name: str, route: str, method: Method, protocol: str = "grpc", public: bool = False) -> Handler:
        """``protocol`` labels metrics and access lines; a ``public`` method needs no API key."""
        keys, request_key_header, request_s = self._keys, self._request_key, self._request_s
        access = self._gateway.access

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            with tracing.server_span(route, metadata, {"rpc.method": route}) as current:
                remaining = context.time_remaining()
                budget = request_s if remaining is None else min(request_s, remaining)
                call = CallContext(
                    new_request_id(metadata.get("x-request-id")),
                    time.monotonic() + budget,
                    metadata.get(request_key_header),
                    method=name,
                )
                failure: tuple[grpc.StatusCode, str] | None = None
                response = None
                try:
                    if not public:
                        keys.check(metadata.get(keys.header), metadata.get("authorization"))
                    if isinstance(request, protos.Undecodable):  # bytes that are not the method's message
                        raise request.error
                    response = await method(request, call)
                except ServingError as error:
                    failure = (error.grpc_code, error.message)
                except asyncio.CancelledError:  # the caller went away (TF Serving's 499 case)
                    access.record(protocol, "POST", route, grpc.StatusCode.CANCELLED.name, call)
                    raise
                except Exception:
                    log.exception("unhandled error (request %s)", call.request_id)
                    failure = (grpc.StatusCode.INTERNAL, "Internal error")
                trailing = [("x-request-id", call.request_id)]
                if call.servable:
                    trailing += [("x-servable", call.servable), ("x-model-version", call.version)]
                if call.degraded:
                    trailing.append(("x-degraded", "true"))
                context.set_trailing_metadata(tuple(trailing))
                if current is not None:
                    tracing.annotate(current, call, failure[0].name if failure else "OK")
                access.record(protocol, "POST", route, failure[0].name if failure else "OK", call)
                if failure is not None:
                    await context.abort(failure[0], failure[1])
                return response

        return handler
