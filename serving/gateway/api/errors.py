"""The one place REST errors become responses: TF Serving's ``{ "error": "..." }`` with its status."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from serving.errors import ServingError
from serving.tfserving.encode import error_body

log = logging.getLogger("tensorgate.gateway")

JSON = "application/json"


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(error_body(message), status_code=status, media_type=JSON, headers=headers)


async def _serving_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ServingError)
    headers = {"WWW-Authenticate": "ApiKey"} if error.http_status == 401 else None
    return error_response(error.http_status, error.message, headers)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    return error_response(400, f"{where}: {first['msg']}" if where else str(first["msg"]))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return error_response(error.status_code, str(error.detail), error.headers)


async def _unexpected(request: Request, error: Exception) -> Response:
    call = request.scope.get("state", {}).get("call")
    log.exception("unhandled error (request %s)", call.request_id if call else "?")
    return error_response(500, "Internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
