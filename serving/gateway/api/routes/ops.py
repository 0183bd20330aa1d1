"""Operations: liveness, readiness, Prometheus metrics, and the list of models TF Serving lacks."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import PlainTextResponse, Response

from serving.gateway.api.deps import API_KEY, CallDep, GatewayDep
from serving.gateway.api.errors import JSON, error_response
from serving.gateway.api.openapi import errors, json_body

router = APIRouter(tags=["operations"])


def _status(value: str) -> dict[int | str, dict[str, Any]]:
    return json_body({"type": "object", "required": ["status"], "properties": {"status": {"const": value}}})


@router.get("/healthz", summary="The process is alive", responses=_status("alive"))
async def healthz(call: CallDep) -> Response:
    call.method = "health"
    return Response(b'{"status":"alive"}', media_type=JSON)


@router.get(
    "/readyz",
    summary="Every configured servable is AVAILABLE upstream (503 with the reason if not)",
    responses={**_status("ready"), **errors(503)},
)
async def readyz(gateway: GatewayDep, call: CallDep) -> Response:
    call.method = "health"
    ready, reason = gateway.catalog.readiness()
    if not ready:
        return error_response(503, f"Not ready: {reason}")
    return Response(b'{"status":"ready"}', media_type=JSON)


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=PlainTextResponse)
async def metrics(gateway: GatewayDep, call: CallDep) -> Response:
    call.method = "metrics"
    return Response(gateway.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


_OK = {"error_code": "OK", "error_message": ""}
_MODELS = {
    "type": "object",
    "required": ["models"],
    "properties": {
        "models": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind"],
                "properties": {"name": {"type": "string"}, "kind": {"enum": ["servable", "route", "ensemble"]}},
            },
        }
    },
}


@router.get(
    "/v1/models",
    dependencies=[API_KEY],
    summary="Servables, routes and ensembles with their state",
    responses=json_body(_MODELS),
)
async def list_models(gateway: GatewayDep, call: CallDep) -> Response:
    call.method = "models"
    catalog = gateway.catalog
    models: list[dict[str, Any]] = []
    for name, state in catalog.states.items():
        available = state.available
        latest = max(available, key=int) if available else None
        models.append(
            {
                "name": name,
                "kind": "servable",
                "upstream": catalog.upstream_for(name),
                "versions": [
                    {"version": v, "state": s, "status": state.statuses.get(v, _OK)}
                    for v, s in sorted(state.versions.items())
                ],
                "labels": catalog.raw_labels(name, latest) if latest else None,
                "error": state.error,
            }
        )
    for name, route in gateway.routes.items():
        models.append(
            {
                "name": name,
                "kind": "route",
                "split": dict(gateway.settings.routes[name].split),
                "shadow": route.shadow,
                "primary": route.primary,
            }
        )
    for name, ensemble in gateway.ensembles.items():
        models.append(
            {
                "name": name,
                "kind": "ensemble",
                "members": list(ensemble.config.members),
                "voting": ensemble.config.voting,
                "weights": ensemble.config.weights,
                "quorum": ensemble.config.needed,
            }
        )
    return Response(orjson.dumps({"models": models}), media_type=JSON)
