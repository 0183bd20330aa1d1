"""Builds the gateway's ASGI app (a plain ASGI front over FastAPI); nothing else lives here."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from serving import tracing
from serving.gateway.api.errors import install_error_handlers
from serving.gateway.api.front import GatewayApp, framework_routes
from serving.gateway.api.middleware import GatewayMiddleware
from serving.gateway.api.openapi import install as install_openapi
from serving.gateway.api.routes import classify, ops, tfserving, ui, v2
from serving.gateway.auth import ApiKeys
from serving.gateway.config import Settings
from serving.gateway.grpc_front import GrpcFront
from serving.gateway.service import Gateway
from serving.gateway.v2 import V2


def create_app(settings: Settings) -> GatewayApp:
    """The ASGI app for ``settings`` (TF Serving's REST routes as plain ASGI, the rest through FastAPI, at
    ``.fastapi``). Raises ConfigError when the config's references do not resolve."""
    gateway = Gateway(settings)
    v2_service = V2(gateway)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        front = GrpcFront(gateway, settings, v2_service) if settings.grpc_port is not None else None
        if front is not None:
            await front.start()
        app.state.grpc_front = front
        _tune_collector(settings)
        try:
            yield
        finally:
            if front is not None:
                await front.stop(settings.timeouts.shutdown_grace_s)
            await gateway.close()
            tracing.shutdown()

    # docs_url/redoc_url None: ui.install serves both with bundled assets (no CDN)
    app = FastAPI(title="tensorgate gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    app.state.v2 = v2_service
    app.state.grpc_front = None
    keys = ApiKeys(settings.api_keys, settings.api_key_header)
    app.state.api_keys = keys
    install_error_handlers(app)
    app.include_router(ops.router)
    ui.install(app)
    app.include_router(classify.router)
    app.include_router(v2.router)
    app.include_router(v2.keyed)
    install_openapi(app, keys, documented=tfserving.router.routes)  # served by GatewayApp, declared here
    app.add_middleware(
        GatewayMiddleware,
        access=gateway.access,
        request_s=settings.timeouts.request_s,
        max_body=settings.limits.max_body_bytes,
        request_key=settings.request_key_header,
        body_read_s=settings.timeouts.body_read_s,
    )
    front = GatewayApp(app, gateway, settings, keys, framework_routes(app))
    traced = settings.tracing
    if tracing.configure(traced.otlp_endpoint, traced.sample_ratio, traced.service_name):
        front.wrap(tracing.HttpSpans)  # inside CORS: preflights are not traced
    _install_cors(front, settings)
    return front


def _tune_collector(settings: Settings) -> None:
    """Once started: every object made so far (FastAPI, pydantic, protobuf, grpc; about a million) lives
    as long as the process, so the collector need not walk it again on every full collection."""
    gc.set_threshold(settings.server.gc_threshold, *gc.get_threshold()[1:])
    if settings.server.gc_freeze:
        gc.collect()
        gc.freeze()


def _install_cors(front: GatewayApp, settings: Settings) -> None:
    """Off unless ``cors.allow_origins`` names origins; outermost (around the TF Serving routes too), so
    preflights skip the rest."""
    cors = settings.cors
    if not cors.allow_origins:
        return
    front.wrap(
        CORSMiddleware,
        allow_origins=cors.allow_origins,
        allow_methods=["GET", "POST"],
        allow_headers=[
            "content-type",
            "authorization",
            settings.api_key_header,
            settings.request_key_header,
            "x-request-id",
            "traceparent",
            "tracestate",
        ],
        expose_headers=["x-request-id", "x-servable", "x-model-version", "x-degraded", "server-timing"],
        max_age=cors.max_age_s,
    )
