"""Builds the gateway's FastAPI app; nothing else lives here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from serving.gateway.api.errors import install_error_handlers
from serving.gateway.api.middleware import GatewayMiddleware
from serving.gateway.api.openapi import install as install_openapi
from serving.gateway.api.routes import classify, ops, tfserving, ui
from serving.gateway.auth import ApiKeys
from serving.gateway.config import Settings
from serving.gateway.grpc_front import GrpcFront
from serving.gateway.service import Gateway


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``. Raises ConfigError when the config's references do not resolve."""
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        front = GrpcFront(gateway, settings) if settings.grpc_port is not None else None
        if front is not None:
            await front.start()
        app.state.grpc_front = front
        try:
            yield
        finally:
            if front is not None:
                await front.stop(settings.timeouts.shutdown_grace_s)
            await gateway.close()

    # docs_url/redoc_url None: ui.install serves both with bundled assets (no CDN)
    app = FastAPI(title="tensorgate gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    app.state.grpc_front = None
    app.state.api_keys = ApiKeys(settings.api_keys, settings.api_key_header)
    install_error_handlers(app)
    app.include_router(ops.router)
    ui.install(app)
    app.include_router(classify.router)
    app.include_router(tfserving.router)  # last: its /v1/{path} catches what the others do not
    install_openapi(app, app.state.api_keys)
    app.add_middleware(
        GatewayMiddleware,
        access=gateway.access,
        request_s=settings.timeouts.request_s,
        max_body=settings.limits.max_body_bytes,
        request_key=settings.request_key_header,
        body_read_s=settings.timeouts.body_read_s,
    )
    _install_cors(app, settings)
    return app


def _install_cors(app: FastAPI, settings: Settings) -> None:
    """Off unless ``cors.allow_origins`` names origins; outermost, so preflights skip the rest."""
    cors = settings.cors
    if not cors.allow_origins:
        return
    app.add_middleware(
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
