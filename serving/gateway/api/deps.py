"""FastAPI dependencies, as ``Annotated`` aliases.

All ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop per
request and dependency on the hot path.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serving.gateway.auth import ApiKeys
from serving.gateway.context import CallContext
from serving.gateway.service import Gateway


async def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_call(request: Request) -> CallContext:
    """The request's context, made by the middleware (request id, deadline, sticky key)."""
    call: CallContext = request.scope["state"]["call"]
    return call


async def require_api_key(request: Request) -> None:
    keys: ApiKeys = request.app.state.api_keys
    keys.check(request.headers.get(keys.header), request.headers.get("authorization"))


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
CallDep = Annotated[CallContext, Depends(get_call)]
API_KEY = Depends(require_api_key)
