"""The gateway's OpenAPI document, declaring what the gateway really answers.

Route decorators declare their success bodies and error statuses with ``errors(...)``; ``install``
finishes the document once per app: FastAPI's 422 validation answers are dropped (validation errors
are TF Serving's 400 here), and with API keys configured the key schemes are declared, with 401, on
every operation that needs a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, routing
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from serving.gateway.api.deps import require_api_key
from serving.gateway.auth import ApiKeys

ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
    "additionalProperties": False,
}
_DESCRIPTIONS = {
    400: "Invalid request: bad JSON, URL, shape, type or batch size (TF Serving's INVALID_ARGUMENT)",
    401: "Missing or invalid API key",
    404: "Unknown model, version or label",
    413: "Body or image over the configured limits",
    429: "The upstream's queue is full",
    501: "Not implemented by the gateway",
    503: "No upstream target available, ensemble quorum lost, or not ready",
    504: "The request's deadline passed",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Response declarations for error statuses, each with TF Serving's ``{"error": "..."}`` body."""
    return {
        status: {"description": _DESCRIPTIONS[status], "content": {"application/json": {"schema": ERROR}}}
        for status in statuses
    }


def json_body(schema: dict[str, Any], description: str = "Successful Response") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


def api_routes(routes: Sequence[BaseRoute]) -> list[APIRoute]:
    """API routes, through included routers (FastAPI >= 0.16x includes them lazily)."""
    contexts = getattr(routing, "iter_route_contexts", None)
    found: list[BaseRoute] = [c.original_route for c in contexts(routes)] if contexts else list(routes)
    return [route for route in found if isinstance(route, APIRoute)]


def _needs_key(route: APIRoute) -> bool:
    return any(dependency.call is require_api_key for dependency in route.dependant.dependencies)


def _finish(schema: dict[str, Any], routes: Sequence[BaseRoute], keys: ApiKeys) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(name, None)
    if not components.get("schemas"):
        components.pop("schemas", None)
    if not keys.enabled:
        return
    components["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": keys.header},
        "bearer": {"type": "http", "scheme": "bearer"},
    }
    schema["components"] = components
    unauthorized = errors(401)[401]
    for route in api_routes(routes):
        if not route.include_in_schema or not _needs_key(route):
            continue
        for method in route.methods or ():
            operation = schema["paths"].get(route.path_format, {}).get(method.lower())
            if operation is not None:
                operation["security"] = [{"apiKey": []}, {"bearer": []}]
                operation["responses"]["401"] = unauthorized


def install(app: FastAPI, keys: ApiKeys, documented: Sequence[BaseRoute] = ()) -> None:
    """Serve the finished document at ``/openapi.json`` (built on first use, then cached). ``documented``:
    routes served outside FastAPI's router (the plain ASGI front) that the document declares too."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            routes = [*app.routes, *documented]
            schema = get_openapi(title=app.title, version=app.version, routes=routes)
            _finish(schema, routes, keys)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
