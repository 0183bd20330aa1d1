"""An inference request and answer of the Open Inference Protocol, decoded: named numpy arrays.

Both fronts (REST with JSON or binary tensors, gRPC) decode into ``InferRequest`` and encode from a
list of ``(name, array)`` outputs, so nothing after the codec depends on the wire format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import InvalidInput
from serving.v2 import datatypes


@dataclass(slots=True)
class RequestedOutput:
    name: str
    binary: bool | None = None  # REST only: None means the request's binary_data_output


@dataclass(slots=True)
class InferRequest:
    model: str
    version: str  # "" for the server's choice; digits for a version; anything else is a version label
    inputs: dict[str, np.ndarray]  # in the request's order, each with its datatype's numpy dtype
    id: str = ""
    outputs: list[RequestedOutput] | None = None  # None: every output of the model
    binary_outputs: bool = False  # REST's binary_data_output
    timeout_us: int = 0  # the request's "timeout" parameter (microseconds); 0: none
    signature: str = ""  # the "signature_name" parameter (this server's extension); "": serving_default
    datatypes: dict[str, str] = field(default_factory=dict)  # input name -> declared datatype


def element_count(shape: Any, where: str) -> tuple[tuple[int, ...], int]:
    """A JSON or proto shape as a tuple, and its element count; InvalidInput if it is not one."""
    if not isinstance(shape, list | tuple):
        raise InvalidInput(f"{where}: shape must be a list of dimensions, got {type(shape).__name__}")
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise InvalidInput(f"{where}: shape {list(shape)} must hold non-negative integers")
    dims = tuple(shape)
    return dims, math.prod(dims)


def parameters_of(request: InferRequest, parameters: dict[str, Any], where: str = "request") -> None:
    """Fill the request-level settings this server reads from ``parameters`` (others are ignored)."""
    binary = parameters.get("binary_data_output")
    if binary is not None:
        if not isinstance(binary, bool):
            raise InvalidInput(f"{where}: parameter binary_data_output must be a boolean")
        request.binary_outputs = binary
    timeout = parameters.get("timeout")
    if timeout is not None:
        if type(timeout) is not int or timeout < 0:
            raise InvalidInput(f"{where}: parameter timeout must be a non-negative integer (microseconds)")
        request.timeout_us = timeout
    signature = parameters.get("signature_name")
    if signature is not None:
        if not isinstance(signature, str):
            raise InvalidInput(f"{where}: parameter signature_name must be a string")
        request.signature = signature


def check_datatype(name: str, datatype: Any) -> np.dtype[Any]:
    if not isinstance(datatype, str):
        raise InvalidInput(f"input '{name}': datatype must be a string, got {type(datatype).__name__}")
    try:
        return datatypes.numpy_dtype(datatype)
    except InvalidInput as error:
        raise InvalidInput(f"input '{name}': {error.message}") from None
