"""Pages for people: the API docs (Swagger UI, ReDoc) and the playground, all served by the gateway.

The docs' scripts and styles come from the pinned ``fastapi-offline`` package (it bundles Swagger UI
and ReDoc) instead of a CDN, so ``/docs`` and ``/redoc`` work on a machine without internet access.
The playground is plain HTML, JavaScript and CSS in ``serving/gateway/playground``: no build step.

Every page carries a Content-Security-Policy that lets it load only from the gateway: ReDoc's bundle
puts a logo from its vendor's CDN in the side menu, and a browser told ``img-src 'self'`` never asks
for it (nor for anything a future bundle might reference).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
PLAYGROUND = Path(__file__).resolve().parents[2] / "playground"
ASSETS_URL = "/assets/docs"
# Inline scripts and styles: FastAPI's Swagger UI page starts the UI in an inline <script>, ReDoc
# styles itself inline and searches in a blob: worker.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
# The playground may be pointed at another gateway (?api=...), so it may connect anywhere.
PLAYGROUND_POLICY = "default-src 'self'; img-src 'self' data: blob:; connect-src *; script-src 'self'; style-src 'self'"


class _WithPolicy:
    """A static-files app whose answers carry a Content-Security-Policy."""

    def __init__(self, app: Any, policy: str) -> None:
        self.app = app
        self.header = (b"content-security-policy", policy.encode("latin-1"))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with_policy(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, send_with_policy)


def install(app: FastAPI) -> None:
    """Add /docs, /redoc, their assets, and /playground. The app must be built with docs_url=None."""
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = "/docs/oauth2-redirect"
    favicon = f"{ASSETS_URL}/favicon.png"

    async def swagger_ui() -> HTMLResponse:
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=favicon,
                oauth2_redirect_url=redirect_url,
                swagger_ui_parameters={"validatorUrl": None},  # never ask an online validator
            )
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc() -> HTMLResponse:
        return _with_policy(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=favicon,
                with_google_fonts=False,
            )
        )

    async def playground_slash() -> RedirectResponse:
        return RedirectResponse("/playground/", status_code=308)

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(redirect_url, oauth2_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
    app.add_api_route("/playground", playground_slash, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS_URL, _WithPolicy(StaticFiles(directory=DOCS_ASSETS), DOCS_POLICY), name="docs-assets")
    playground = StaticFiles(directory=PLAYGROUND, html=True)
    app.mount("/playground", _WithPolicy(playground, PLAYGROUND_POLICY), name="playground")


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = DOCS_POLICY
    return page
