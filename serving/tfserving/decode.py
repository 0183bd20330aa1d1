"""TF Serving's REST request bodies -> numpy arrays (``FillPredictRequestFromJson``), with its errors.

Row (``instances``) and columnar (``inputs``) formats, ``{"b64": ...}`` for strings, NaN and
Infinity as rapidjson's flag accepts them, and TF Serving's error text for every malformed body.
Input dtypes are TF ``DataType`` numbers, as a signature's ``TensorInfo.dtype`` carries them.
A regular numeric body takes numpy's own conversion; anything else walks the values one by one,
which is what produces TF Serving's messages.
"""

from __future__ import annotations

import array as pyarray
import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import orjson

from serving.errors import InvalidInput, ServingError, Unimplemented
from serving.tensors import DT, DT_STRING
from serving.tfserving.values import (
    DT_BOOL,
    DT_DOUBLE,
    DT_FLOAT,
    DT_HALF,
    DT_INT64,
    DT_UINT32,
    DT_UINT64,
    FLOAT32_MAX,
    document_text,
    json_type,
    type_name,
    value_to_string,
)

_NUMPY = {
    DT_FLOAT: np.float32,
    DT_DOUBLE: np.float64,
    DT_INT64: np.int64,
    DT_BOOL: np.bool_,
    DT_UINT32: np.uint32,
    DT_UINT64: np.uint64,
    DT["DT_INT32"].number: np.int32,
    DT["DT_INT16"].number: np.int16,
    DT["DT_INT8"].number: np.int8,
    DT["DT_UINT8"].number: np.uint8,
}
_SMALL_LIMIT = 2**24 - 1  # ints up to this are exact in float32 (TF Serving's limit for float inputs)
_SMALL_INTS = {DT[name].number for name in ("DT_INT32", "DT_INT16", "DT_INT8", "DT_UINT8")}
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class RequestFormat(Enum):
    ROW = "instances"  # answers "predictions"
    COLUMNAR = "inputs"  # answers "outputs"


@dataclass(frozen=True, slots=True)
class PredictJson:
    signature_name: str  # '' means the default signature
    inputs: dict[str, np.ndarray]
    request_format: RequestFormat


_ORJSON_TO_RAPIDJSON = (
    ("unexpected content after document", "The document root must not be followed by other values."),
    ("unexpected end of data", "Invalid value."),
    ("invalid escape", "Invalid escape character in string."),
    ("str is not valid UTF-8", "Invalid encoding in string."),
    ("control character", "Invalid encoding in string."),
)
_NAN_INF = re.compile(rb"(?<![\w\"])-?(?:NaN|Inf(?:inity)?)(?![\w\"])")


def _nonfinite(text: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[text]


def parse_json_object(body: bytes) -> dict[str, Any]:
    """ParseJson: the body as a JSON object (NaN and Infinity accepted, as rapidjson's flag does)."""
    if not body:
        raise InvalidInput("JSON Parse error: The document is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        document = _parse_fallback(body, error)
    if not isinstance(document, dict):
        raise InvalidInput(f"JSON Value: {value_to_string(document)} Is not object")
    return document


def _parse_fallback(body: bytes, error: orjson.JSONDecodeError) -> Any:
    if _NAN_INF.search(body):
        text = re.sub(rb"(?<![\w\"])(-?)Inf(?:inity)?(?![\w\"])", rb"\1Infinity", body)
        try:
            return json.loads(text, parse_constant=_nonfinite)
        except ValueError:
            pass
    message = "Invalid value."
    for needle, rapidjson_message in _ORJSON_TO_RAPIDJSON:
        if needle in str(error):
            message = rapidjson_message
            break
    raise InvalidInput(f"JSON Parse error: {message} at offset: {error.pos}") from None


# A body that is only numbers in brackets, e.g. {"instances": [[[[0], [12], ...]]]}, the usual request:
# its numbers are read as one flat JSON list and its nesting from the brackets alone, which spares
# creating a Python list per row (about 800 for one 28x28x1 image) and numpy's walk over them.
_NUMERIC_BODY = re.compile(
    rb'\s*\{\s*(?:"signature_name"\s*:\s*"(?P<before>[\w\-./]*)"\s*,\s*)?"(?P<key>instances|inputs)"\s*:\s*'
    rb'(?P<value>\[[-0-9eE.,+\[\]\s]*\])\s*(?:,\s*"signature_name"\s*:\s*"(?P<after>[\w\-./]*)"\s*)?\}\s*'
)
_WHITESPACE = b" \t\n\r"
_NUMBER_CHARACTERS = b"0123456789.eE+-"
_SHAPES: dict[bytes, tuple[int, ...] | None] = {}  # bracket-and-comma skeleton -> dense shape
_MAX_SHAPES = 256


@dataclass(frozen=True, slots=True)
class NumericBody:
    """A body of the form ``{"instances"|"inputs": <nested numbers>}`` (and an optional plain
    ``signature_name``), read without building the nested lists."""

    signature_name: str
    request_format: RequestFormat
    shape: tuple[int, ...]
    values: list[Any]  # the numbers, flat, in order

    @classmethod
    def read(cls, body: bytes) -> NumericBody | None:
        """None unless the body has that form, is valid JSON and its nesting is regular (then the
        general decoder, which produces TF Serving's errors, takes it)."""
        match = _NUMERIC_BODY.fullmatch(body)
        if match is None or (match["before"] is not None and match["after"] is not None):
            return None
        value = match["value"].translate(None, _WHITESPACE)
        shape = _shape(value.translate(None, _NUMBER_CHARACTERS))
        if shape is None:
            return None
        try:
            values = orjson.loads(b"[" + value.translate(None, b"[]") + b"]")
        except orjson.JSONDecodeError:
            return None
        if len(values) != math.prod(shape):  # e.g. "[]" and "[5]" have the same skeleton
            return None
        signature = (match["before"] or match["after"] or b"").decode("ascii")
        request_format = RequestFormat.ROW if match["key"] == b"instances" else RequestFormat.COLUMNAR
        return cls(signature, request_format, shape, values)

    def decode(self, input_dtypes: Mapping[str, int]) -> PredictJson | None:
        """The request, as ``decode_predict_request`` would give it; None where that would raise (the
        general decoder then raises TF Serving's error) or where numpy cannot convert exactly."""
        if len(input_dtypes) != 1:
            return None
        name, dtype = next(iter(input_dtypes.items()))
        array = _small_floats(self.values) if dtype in (DT_FLOAT, DT_DOUBLE) else None
        if array is not None:
            array = array.astype(_NUMPY[dtype], copy=False)
        else:
            array = _fast_array(self.values, dtype, bools=False)
            if array is None:
                return None
        return PredictJson(self.signature_name, {name: array.reshape(self.shape)}, self.request_format)


def _small_floats(values: list[Any]) -> np.ndarray | None:
    """The numbers of a ``NumericBody`` (JSON ints and floats, never bools: its pattern admits no
    letters) when all have magnitude at most 2**24 - 1, so that they are exact in float32 and float64
    whether JSON wrote them as ints or floats; None otherwise (the general path then decides).
    ``array.array`` converts a list in C, faster than numpy's per-item type discovery: int64 first
    (the usual pixel body), float64 when a float is among them."""
    for code, dtype in (("q", np.int64), ("d", np.float64)):
        try:
            array = np.frombuffer(pyarray.array(code, values), dtype=dtype)
        except (TypeError, OverflowError):
            continue
        # min and max, not abs: abs of int64's lowest value overflows; NaN fails both comparisons
        if array.size and not (array.min() >= -_SMALL_LIMIT and array.max() <= _SMALL_LIMIT):
            return None
        return array
    return None


def _shape(skeleton: bytes) -> tuple[int, ...] | None:
    """The dense shape of a skeleton such as ``[[,,],[,,]]`` ((2, 3)); None unless every list at a
    level has the same length."""
    shape = _SHAPES.get(skeleton, ())
    if shape != ():
        return shape
    found = _regular_shape(skeleton)
    if len(_SHAPES) >= _MAX_SHAPES:
        _SHAPES.clear()
    _SHAPES[skeleton] = found
    return found


def _regular_shape(skeleton: bytes) -> tuple[int, ...] | None:
    rank = len(skeleton) - len(skeleton.lstrip(b"["))
    end = skeleton.find(b"]")
    if rank == 0 or end < rank:
        return None
    group = skeleton[rank - 1 : end + 1]  # the first innermost list: "[" + commas + "]"
    dims = [end - rank + 1]
    for level in range(rank - 2, -1, -1):
        position, count = level + 1, 0
        while skeleton.startswith(group, position):
            count += 1
            position += len(group)
            if skeleton[position : position + 1] != b",":
                break
            position += 1
        if skeleton[position : position + 1] != b"]":
            return None
        dims.append(count)
        group = skeleton[level : position + 1]
    if group != skeleton:
        return None
    return tuple(reversed(dims))


def may_hold_bools(body: bytes) -> bool:
    """False when the body cannot hold a JSON ``true`` or ``false`` (numpy would take them for ints)."""
    return b"true" in body or b"false" in body


def signature_name_of(document: Mapping[str, Any]) -> str:
    """FillSignature: the optional ``signature_name`` ('' when absent)."""
    if "signature_name" not in document:
        return ""
    name = document["signature_name"]
    if not isinstance(name, str):
        raise InvalidInput(
            f"JSON Value: {document_text(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


def decode_predict_request(
    document: Mapping[str, Any], input_dtypes: Mapping[str, int], bools: bool = True
) -> PredictJson:
    """FillPredictRequestFromJson after the signature is known: ``input_dtypes`` maps the signature's
    input names to TF DataType numbers. ``bools=False`` says the body holds no JSON booleans
    (``may_hold_bools``), which spares a check. Raises InvalidInput with TF Serving's messages."""
    signature_name = signature_name_of(document)
    if not input_dtypes:
        raise InvalidInput(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    has_instances = "instances" in document
    has_inputs = "inputs" in document
    if has_instances and has_inputs:
        raise InvalidInput(
            f"JSON Value: {document_text(document)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise InvalidInput(f"JSON Value: {document_text(document)} Excepting 'instances' to be an list/array")
        if not instances:
            raise InvalidInput(f"JSON Value: {document_text(document)} No values in 'instances' array")
        return PredictJson(signature_name, _from_instances(instances, input_dtypes, bools), RequestFormat.ROW)
    if has_inputs:
        inputs = _from_inputs(document["inputs"], input_dtypes, bools)
        return PredictJson(signature_name, inputs, RequestFormat.COLUMNAR)
    raise InvalidInput("Missing 'inputs' or 'instances' key")


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _from_instances(instances: list[Any], input_dtypes: Mapping[str, int], bools: bool) -> dict[str, np.ndarray]:
    first = instances[0]
    if not isinstance(first, dict) and len(input_dtypes) > 1:
        raise InvalidInput(
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map"
        )
    objects = isinstance(first, dict) and not is_b64(first)
    names = sorted(input_dtypes)
    if not objects:
        name = names[0]
        fast = _fast_array(instances, input_dtypes[name], bools)
        if fast is not None:
            return {name: fast}
        for index, item in enumerate(instances):
            if isinstance(item, dict) and not is_b64(item):
                raise InvalidInput(f"Expecting value/list but got object at item {index} of input list")
        try:
            return {name: _batched(instances, input_dtypes[name], bools)}
        except _ItemError as error:
            raise InvalidInput(
                f"Failed to process element: {error.index} of 'instances' list. Error: {error.status}"
            ) from None
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or is_b64(item):
            raise InvalidInput(f"Expecting object but got list at item {index} of input list")
        for key, value in item.items():
            if key not in columns:
                raise InvalidInput(
                    f"Failed to process element: {index} key: {key} of 'instances' list. Error: "
                    f"INVALID_ARGUMENT: JSON object: does not have named input: {key}"
                )
            columns[key].append(value)
        if set(item) != set(names):
            raise InvalidInput(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{value_to_string(item, 0)} keys must be equal to: {','.join(names)}"
            )
    arrays = {}
    for name in names:
        try:
            arrays[name] = _batched(columns[name], input_dtypes[name], bools)
        except _ItemError as error:
            raise InvalidInput(
                f"Failed to process element: {error.index} key: {name} of 'instances' list. Error: {error.status}"
            ) from None
    return arrays


class _ItemError(Exception):
    def __init__(self, index: int, status: str) -> None:
        super().__init__(status)
        self.index = index
        self.status = status


def _batched(items: list[Any], dtype: int, bools: bool) -> np.ndarray:
    """Stack row-format items of one input; each must have the first item's shape."""
    fast = _fast_array(items, dtype, bools)
    if fast is not None:
        return fast
    rows = []
    first_shape: list[int] | None = None
    first_size = 0
    for index, item in enumerate(items):
        try:
            array = _to_array(item, dtype, bools)
        except ServingError as error:
            raise _ItemError(index, f"{error.grpc_code.name}: {error.message}") from None
        shape = list(array.shape)
        if first_shape is None:
            first_shape, first_size = shape, array.size
        elif array.size != first_size:
            raise _ItemError(index, f"INVALID_ARGUMENT: Expecting tensor size: {first_size} but got: {array.size}")
        elif shape != first_shape:
            raise _ItemError(
                index,
                f"INVALID_ARGUMENT: Expecting shape [{','.join(map(str, first_shape))}] but got: "
                f"[{','.join(map(str, shape))}]",
            )
        rows.append(array)
    return np.stack(rows)


def _from_inputs(value: Any, input_dtypes: Mapping[str, int], bools: bool) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or is_b64(value):
        if len(input_dtypes) > 1:
            raise InvalidInput(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required "
                "as per tensorinfo_map"
            )
        name = next(iter(input_dtypes))
        return {name: _to_array(value, input_dtypes[name], bools)}
    arrays = {}
    for name in sorted(input_dtypes):
        if name not in value:
            raise InvalidInput(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _to_array(value[name], input_dtypes[name], bools)
    return arrays


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fast_array(value: Any, dtype: int, bools: bool) -> np.ndarray | None:
    """numpy's own conversion when it is clearly exact (regular numeric nesting, no bools); None to
    fall back to the value-by-value walk that produces TF Serving's error messages."""
    target = _NUMPY.get(dtype)
    if target is None or dtype == DT_BOOL:
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):
        return None
    kind = array.dtype.kind
    if kind == "f":
        if dtype not in (DT_FLOAT, DT_DOUBLE):
            return None
        if dtype == DT_FLOAT and array.size:
            largest = np.abs(array).max()
            if largest > FLOAT32_MAX and not np.isinf(largest):
                return None
            if np.isnan(largest) or np.isinf(largest):
                finite = array[np.isfinite(array)]
                if finite.size and np.abs(finite).max() > FLOAT32_MAX:
                    return None
    elif kind in "iu":
        if dtype == DT_FLOAT and array.size and np.abs(array).max() > 2**24 - 1:
            return None
        if dtype in _SMALL_INTS or dtype == DT_UINT32:
            low, high = (0, 2**32 - 1) if dtype == DT_UINT32 else _INT32
            if array.size and (array.min() < low or array.max() > high):
                return None
        if dtype == DT_UINT64 and array.size and array.min() < 0:
            return None
    else:
        return None
    if bools and _contains_bool(value):
        return None
    return array.astype(target, copy=False)


def _contains_bool(value: Any) -> bool:
    """Python bools are ints to numpy. ``value`` already converted to a numeric array, so it holds only
    lists, numbers and bools, and its JSON has the words true/false exactly when it holds a bool:
    orjson writes that in a few microseconds where walking every leaf in Python took about 1 ms for one
    28x28 image."""
    if not isinstance(value, list):
        return isinstance(value, bool)
    try:
        text = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # e.g. an integer over 64 bits
        return _scan_for_bool(value)
    return b"true" in text or b"false" in text


def _scan_for_bool(value: Any) -> bool:
    while isinstance(value, list) and value:
        if any(isinstance(item, bool) for item in value):
            return True
        if not isinstance(value[0], list):
            return False
        return any(_scan_for_bool(item) for item in value)
    return isinstance(value, bool)


def _to_array(value: Any, dtype: int, bools: bool = True) -> np.ndarray:
    """FillTensorProto for one JSON value: nested lists of one dense shape (from the first elements)."""
    fast = _fast_array(value, dtype, bools)
    if fast is not None:
        return fast
    shape = _dense_shape(value)
    values: list[Any] = []
    _fill(value, 0, shape, dtype, values)
    if dtype == DT_STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    if dtype == DT_HALF:
        raise Unimplemented(
            f"Conversion of JSON Value: {value_to_string(values[0] if values else value)} to type: half"
        )
    target = _NUMPY.get(dtype)
    if target is None:
        raise Unimplemented(f"Conversion of JSON Value: {value_to_string(value)} to type: {type_name(dtype)}")
    return np.array(values, dtype=target).reshape(shape)


def _fill(value: Any, level: int, shape: list[int], dtype: int, values: list[Any]) -> None:
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise InvalidInput(
                f"JSON Value: {value_to_string(value)} found at "
                f"incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {rank}"
            )
        values.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise InvalidInput(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise InvalidInput(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, values)


def _type_error(value: Any, dtype: int) -> InvalidInput:
    return InvalidInput(
        f"JSON Value: {value_to_string(value)} Type: {json_type(value)} is not of expected type: {type_name(dtype)}"
    )


def _scalar(value: Any, dtype: int) -> Any:
    """AddValueToTensor (and base64 objects for strings)."""
    if isinstance(value, dict):
        if dtype != DT_STRING:
            raise _type_error(value, dtype)
        if not is_b64(value):
            raise InvalidInput(f"JSON Value: {value_to_string(value)} not formatted correctly for base64 data")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("Unable to base64 decode") from None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if dtype in (DT_FLOAT, DT_DOUBLE, DT_HALF):
        if not number:
            raise _type_error(value, dtype)
        limit_int, limit_float = (2**24 - 1, FLOAT32_MAX) if dtype != DT_DOUBLE else (2**53 - 1, math.inf)
        lossless = (
            abs(value) <= limit_int
            if isinstance(value, int)
            else (not math.isfinite(value) or abs(value) <= limit_float)
        )
        if not lossless:
            target = "double" if dtype == DT_DOUBLE else "float"
            raise InvalidInput(
                f"Cannot convert JSON value: {value_to_string(value)} to {target} without loss of precision."
            )
        return float(value)
    if dtype == DT_STRING:
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    if dtype == DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise _type_error(value, dtype)
    low, high = {DT_INT64: _INT64, DT_UINT32: (0, 2**32 - 1), DT_UINT64: (0, 2**64 - 1)}.get(dtype, _INT32)
    if not low <= value <= high:
        raise _type_error(value, dtype)
    return value
