"""The Open Inference Protocol's REST bodies: JSON tensors and the binary tensor data extension.

A request body is a JSON document, or (binary extension) a JSON header of ``Inference-Header-Content-Length``
bytes followed by the inputs that declare ``parameters.binary_data_size``, in their order. An answer
carries outputs as JSON ``data``, or as binary data after the header when the request asked for it
(``parameters.binary_data`` per output, ``binary_data_output`` for all). Every malformed body is an
InvalidInput (400) naming what was wrong; nothing here can answer 500 or wait.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from serving.errors import InvalidInput, PayloadTooLarge
from serving.v2 import raw
from serving.v2.infer import InferRequest, RequestedOutput, check_datatype, element_count, parameters_of

HEADER_LENGTH = "inference-header-content-length"
JSON = "application/json"
BINARY = "application/octet-stream"

# numpy kinds a JSON array may have for each kind of datatype (ints are fine for floats, not the reverse)
_ACCEPTED_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}


def decompress(body: bytes, encoding: str | bytes | None, limit: int) -> bytes:
    """A body sent with ``Content-Encoding`` gzip or deflate (tritonclient's request compression), at
    most ``limit`` bytes once inflated (else PayloadTooLarge: a small body cannot take memory)."""
    if not encoding:
        return body
    name = (encoding.decode("latin-1") if isinstance(encoding, bytes) else encoding).strip().lower()
    if name == "identity":
        return body
    if name not in ("gzip", "deflate"):
        raise InvalidInput(f"Content-Encoding {name[:40]!r} is not supported (gzip, deflate or identity)")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if name == "gzip" else zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise InvalidInput(f"The body is not valid {name} data: {error}") from None
    if len(inflated) > limit:
        raise PayloadTooLarge(f"Request body is over the limit of {limit} bytes once decompressed")
    if not inflater.eof:
        raise InvalidInput(f"The body's {name} data is cut off")
    return inflated


def split(body: bytes, header_length: str | bytes | None) -> tuple[bytes, memoryview]:
    """(JSON header, binary data) of a body; the whole body is JSON without the header."""
    if header_length is None:
        return body, memoryview(b"")
    text = header_length.decode("latin-1") if isinstance(header_length, bytes) else header_length
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise InvalidInput(f"Inference-Header-Content-Length must be a number of bytes, got {text[:40]!r}")
    length = int(text)
    if not 0 < length <= len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length is {length}, but the body has {len(body)} bytes"
            + ("" if length else " (the JSON header cannot be empty)")
        )
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def decode_request(body: bytes, header_length: str | bytes | None, model: str, version: str) -> InferRequest:
    """An inference request body (JSON, or JSON header plus binary data) as an InferRequest."""
    header, binary = split(body, header_length)
    try:
        document = orjson.loads(header)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"The request body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"The request body must be a JSON object, got {_json_type(document)}")
    request = InferRequest(model=model, version=version, inputs={})
    request_id = document.get("id")
    if request_id is not None:
        if not isinstance(request_id, str):
            raise InvalidInput(f"id must be a string, got {_json_type(request_id)}")
        request.id = request_id
    parameters = document.get("parameters")
    if parameters is not None:
        parameters_of(request, _object(parameters, "parameters"))
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("inputs must be a non-empty list of tensors")
    offset = 0
    for item in inputs:
        offset = _input(request, item, binary, offset)
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes of binary data after the last input's binary_data_size "
            f"(the body holds {len(binary)} bytes after its JSON header, the inputs declare {offset})"
        )
    outputs = document.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise InvalidInput(f"outputs must be a list, got {_json_type(outputs)}")
        request.outputs = [_requested_output(item) for item in outputs]
    return request


def _input(request: InferRequest, item: Any, binary: memoryview, offset: int) -> int:
    if not isinstance(item, dict):
        raise InvalidInput(f"every input must be a JSON object, got {_json_type(item)}")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput("every input needs a name (a string)")
    if name in request.inputs:
        raise InvalidInput(f"input '{name}' is given twice")
    where = f"input '{name}'"
    datatype: str = item.get("datatype")  # type: ignore[assignment]  # checked on the next line
    dtype = check_datatype(name, datatype)
    shape, count = element_count(item.get("shape"), where)
    parameters = item.get("parameters")
    size = None
    if parameters is not None:
        size = _object(parameters, f"{where} parameters").get("binary_data_size")
    data = item.get("data")
    if size is not None:
        if type(size) is not int or size < 0:
            raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer, got {size!r}")
        if data is not None:
            raise InvalidInput(f"{where} has both data and binary_data_size; send one")
        if offset + size > len(binary):
            raise InvalidInput(
                f"{where}: binary_data_size is {size}, but only {len(binary) - offset} bytes of binary data "
                f"remain after the JSON header"
            )
        array = raw.decode(binary[offset : offset + size], datatype, dtype, shape, count, where)
        offset += size
    elif data is None:
        raise InvalidInput(f"{where} has no data (nor a binary_data_size)")
    else:
        array = _from_json(data, datatype, dtype, shape, count, where)
    request.inputs[name] = array
    request.datatypes[name] = datatype
    return offset


def _from_json(data: Any, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], count: int, where: str) -> Any:
    if not isinstance(data, list):
        data = [data]  # a single value, as some clients send for a scalar or one element
    if datatype == "BYTES":
        strings = _flat_strings(data, where)
        if len(strings) != count:
            raise InvalidInput(f"{where}: {len(strings)} values, but shape {list(shape)} holds {count}")
        elements = np.empty(count, dtype=object)
        elements[:] = strings
        return elements.reshape(shape)
    try:
        values = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"{where}: data is a nested list of uneven lengths") from None
    if values.size != count:
        raise InvalidInput(f"{where}: {values.size} values, but shape {list(shape)} holds {count}")
    if count and dtype.kind in "iu" and values.dtype.kind in "fO":
        values = _big_integers(data, values, dtype, datatype, where)  # numpy made ints past int64 floats
    if count and values.dtype.kind not in _ACCEPTED_KINDS[dtype.kind]:
        raise InvalidInput(f"{where}: data of {datatype} must be {_KIND_WORDS[dtype.kind]}, got {_kind_word(values)}")
    if dtype.kind in "iu" and values.dtype != dtype and count:
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise InvalidInput(f"{where}: a value is out of the range of {datatype}")
    with np.errstate(over="ignore"):
        array = values.astype(dtype, copy=False).reshape(shape)
    if dtype.kind == "f" and dtype.itemsize < 8 and count and not np.isfinite(array).all():
        raise InvalidInput(f"{where}: a value is out of the range of {datatype}")
    return array


def _big_integers(data: Any, values: np.ndarray, dtype: np.dtype[Any], datatype: str, where: str) -> np.ndarray:
    """Integers numpy could not hold in one int64/uint64 array, converted one by one (or the error)."""
    items = np.asarray(data, dtype=object).reshape(-1).tolist()
    if not all(type(item) is int for item in items):
        return values  # floats or other values: the kind check below names them
    try:
        return np.array(items, dtype=dtype)
    except OverflowError:
        raise InvalidInput(f"{where}: a value is out of the range of {datatype}") from None


_KIND_WORDS = {"b": "true or false", "u": "integers", "i": "integers", "f": "numbers"}


def _kind_word(values: np.ndarray) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "non-integers", "U": "strings"}.get(
        values.dtype.kind, "mixed or non-numeric values"
    )


def _flat_strings(data: list[Any], where: str) -> list[bytes]:
    values: list[bytes] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, str):
                values.append(item.encode("utf-8"))
            elif isinstance(item, list):
                stack.append(iter(item))
                break
            else:
                raise InvalidInput(f"{where}: data of BYTES must be strings, got {_json_type(item)}")
        else:
            stack.pop()
    return values


def _requested_output(item: Any) -> RequestedOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidInput("every requested output must be an object with a name (a string)")
    output = RequestedOutput(item["name"])
    parameters = item.get("parameters")
    if parameters is not None:
        parameters = _object(parameters, f"output '{output.name}' parameters")
        binary = parameters.get("binary_data")
        if binary is not None:
            if not isinstance(binary, bool):
                raise InvalidInput(f"output '{output.name}': binary_data must be a boolean")
            output.binary = binary
        if parameters.get("classification"):
            raise InvalidInput(f"output '{output.name}': the classification extension is not supported")
    return output


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# Answers --------------------------------------------------------------------------------------------


def encode_response(
    model: str, version: str, request_id: str, outputs: Sequence[tuple[str, str, np.ndarray, bool]]
) -> tuple[bytes, int | None]:
    """The body of an answer and, when some output is binary, its JSON header's length.

    ``outputs`` holds (name, datatype, array, binary) in the order to answer them.
    """
    items = []
    tail = []
    for name, datatype, array, binary in outputs:
        item: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            data = raw.encode(array, datatype)
            item["parameters"] = {"binary_data_size": len(data)}
            tail.append(data)
        else:
            item["data"] = _json_data(array, datatype, name)
        items.append(item)
    document: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id:
        document["id"] = request_id
    document["outputs"] = items
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tail:
        return header, None
    return b"".join((header, *tail)), len(header)


def _json_data(array: np.ndarray, datatype: str, name: str) -> Any:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        try:
            return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in flat]
        except UnicodeDecodeError:
            raise InvalidInput(
                f"output '{name}' holds bytes that are not UTF-8 text; request it with binary_data"
            ) from None
    if datatype == "FP16":
        return flat.astype(np.float32)  # orjson writes float16 too, but as float32 text anyway
    return np.ascontiguousarray(flat)
