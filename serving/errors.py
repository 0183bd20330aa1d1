"""The project's error hierarchy, shared by the model server and the gateway.

Each error carries its gRPC status code; the HTTP status follows TF Serving's own mapping from
status codes to HTTP (``model_servers/http_server.cc``), so REST answers match tensorflow_model_server.
One FastAPI exception handler and one gRPC wrapper per server turn these into responses; the body is
TF Serving's ``{"error": "..."}``.
"""

from __future__ import annotations

import grpc

# TF Serving's table: gRPC/absl status code -> HTTP status of its REST API.
HTTP_STATUS_BY_GRPC_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# Numeric values of grpc.StatusCode (and of TF's error::Code), for protos that carry a code as int.
GRPC_CODE_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def http_status_for(code: grpc.StatusCode) -> int:
    return HTTP_STATUS_BY_GRPC_CODE.get(code, 500)


class ServingError(Exception):
    """Base class: a message safe to show to the caller and the status it maps to."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status_for(self.grpc_code)

    @classmethod
    def from_code(cls, code: grpc.StatusCode, message: str) -> ServingError:
        """The most specific subclass for a status code (e.g. one read from an upstream's answer)."""
        for subclass in _ALL_SUBCLASSES:
            if subclass.grpc_code == code:
                return subclass(message)
        error = ServingError(message)
        error.grpc_code = code
        return error


class InvalidInput(ServingError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ServingError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(ServingError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServingError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ServingError):
    grpc_code = grpc.StatusCode.NOT_FOUND


class PayloadTooLarge(ServingError):
    """Body over the configured limit. gRPC has no such code; RESOURCE_EXHAUSTED is what grpc uses
    for an oversized message, while REST answers 413 (not 429) so clients do not retry it."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    @property
    def http_status(self) -> int:
        return 413


class ResourceExhausted(ServingError):
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Cancelled(ServingError):
    grpc_code = grpc.StatusCode.CANCELLED


class Unimplemented(ServingError):
    grpc_code = grpc.StatusCode.UNIMPLEMENTED


class Unavailable(ServingError):
    grpc_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(ServingError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class RequestTimeout(DeadlineExceeded):
    """A client too slow to send its request (headers or body): REST answers 408, not TF Serving's 504
    for a slow model, so the status says whose side was slow."""

    @property
    def http_status(self) -> int:
        return 408


class Internal(ServingError):
    grpc_code = grpc.StatusCode.INTERNAL


_ALL_SUBCLASSES: tuple[type[ServingError], ...] = (
    InvalidInput,
    FailedPrecondition,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    ResourceExhausted,
    Cancelled,
    Unimplemented,
    Unavailable,
    DeadlineExceeded,
    Internal,
)
