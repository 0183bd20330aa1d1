"""TF Serving's REST JSON <-> numpy codec, without TensorFlow.

Mirrors ``tensorflow_serving/util/json_tensor.cc`` so a client cannot tell us from
tensorflow_model_server: the request formats (row ``instances``, columnar ``inputs``, ``{"b64": ...}``
for strings), the error messages a malformed body gets, and the response layout byte for byte
(rapidjson's PrettyWriter with 4-space indent, values of one row on one line, floats printed with
six significant digits unless that loses precision, whole floats with a trailing ``.0``,
``NaN``/``Infinity``).

Used by the model server and the gateway. Input dtypes are TF ``DataType`` numbers
(``serving.protos.DataType``), as a signature's ``TensorInfo.dtype`` carries them.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import orjson

from serving import protos
from serving.errors import InvalidInput, ServingError, Unimplemented
from serving.tensors import DT, DT_STRING, dtype_name

DEFAULT_SIGNATURE = "serving_default"

DT_FLOAT = DT["DT_FLOAT"].number
DT_DOUBLE = DT["DT_DOUBLE"].number
DT_HALF = DT["DT_HALF"].number
DT_INT64 = DT["DT_INT64"].number
DT_BOOL = DT["DT_BOOL"].number
DT_UINT32 = DT["DT_UINT32"].number
DT_UINT64 = DT["DT_UINT64"].number
_SMALL_INTS = {DT[name].number for name in ("DT_INT32", "DT_INT16", "DT_INT8", "DT_UINT8")}

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
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class RequestFormat(Enum):
    ROW = "instances"  # answers "predictions"
    COLUMNAR = "inputs"  # answers "outputs"


def type_name(number: int) -> str:
    """TF's DataTypeString: DT_FLOAT -> 'float'."""
    name = dtype_name(number)
    return name[3:].lower() if name.startswith("DT_") else name


# ---------------------------------------------------------------------------------------------
# Writing JSON as rapidjson's PrettyWriter does
# ---------------------------------------------------------------------------------------------


def _indent(depth: int) -> str:
    return "\n" + "    " * depth


def json_string(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return json.dumps(text, ensure_ascii=False)


def format_decimal(value: float, double: bool = False) -> str:
    """One float as TF Serving's WriteDecimal prints it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:.6g}"
    parsed = float(text)
    if (parsed if double else float(np.float32(parsed))) != value:
        text = ("%.17g" if double else "%.9g") % value
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _format_floats(array: np.ndarray) -> list[str]:
    """Vectorised ``format_decimal`` over a float array (flattened, C order)."""
    flat = array.reshape(-1)
    double = flat.dtype == np.float64
    values = flat.astype(np.float64).tolist()
    finite = np.isfinite(flat)
    texts = [f"{v:.6g}" for v in values]
    if finite.all():
        back = np.array(texts, dtype=np.float64)
        if not double:
            back = back.astype(np.float32)
        wrong = np.nonzero(back != flat)[0]
    else:
        wrong = np.arange(flat.size)
    for index in wrong.tolist():
        texts[index] = format_decimal(values[index], double)
    for index, text in enumerate(texts):
        if "." not in text and "e" not in text and finite[index]:
            texts[index] = text + ".0"
    return texts


def _leaf_tokens(name: str, array: np.ndarray) -> list[str]:
    """Each value of an output tensor as TF Serving writes it (C order)."""
    kind = array.dtype.kind
    if kind == "f":
        if array.dtype == np.float16:
            array = array.astype(np.float32)
        return _format_floats(array)
    if kind == "b":
        return ["true" if v else "false" for v in array.reshape(-1).tolist()]
    if kind in "iu":
        return [str(v) for v in array.reshape(-1).tolist()]
    if kind in "OSU":
        items = array.reshape(-1).tolist()
        if name.endswith("_bytes"):
            return [_B64_MARK + base64.b64encode(_as_bytes(v)).decode("ascii") for v in items]
        return [json_string(v if isinstance(v, bytes | str) else str(v)) for v in items]
    raise InvalidInput(f"Failed to write JSON value for tensor type: {array.dtype}")


_B64_MARK = "\x00b64:"  # token prefix: write as {"b64": ...}, whose layout depends on depth


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _write_token(token: str, depth: int, out: list[str]) -> None:
    if token.startswith(_B64_MARK):
        encoded = token[len(_B64_MARK) :]
        out.append("{" + _indent(depth + 1) + '"b64": "' + encoded + '"' + _indent(depth) + "}")
    else:
        out.append(token)


def _write_tensor(
    tokens: Iterator[str], shape: Sequence[int], dim: int, depth: int, single_line: bool, out: list[str]
) -> None:
    """AddTensorValues: nested arrays from ``dim`` on; ``depth`` is the number of open containers."""
    if dim >= len(shape):
        _write_token(next(tokens), depth, out)
        return
    out.append("[")
    size = shape[dim]
    for index in range(size):
        if index:
            out.append(", " if single_line else ",")
        if not single_line:
            out.append(_indent(depth + 1))
        _write_tensor(tokens, shape, dim + 1, depth + 1, single_line, out)
    if size and not single_line:
        out.append(_indent(depth))
    out.append("]")


def encode_predict_response(outputs: Mapping[str, np.ndarray], request_format: RequestFormat) -> bytes:
    """The body TF Serving answers a REST predict with (``predictions`` or ``outputs``)."""
    if not outputs:
        raise InvalidInput("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    tokens = {name: iter(_leaf_tokens(name, arrays[name])) for name in names}
    several = len(names) > 1
    out: list[str] = []
    if request_format is RequestFormat.COLUMNAR:
        out.append('{\n    "outputs": ')
        if several:
            out.append("{")
        for position, name in enumerate(names):
            if several:
                out.append(("," if position else "") + _indent(2) + json_string(name) + ": ")
            _write_tensor(tokens[name], arrays[name].shape, 0, 2 if several else 1, False, out)
        if several:
            out.append(_indent(1) + "}")
        out.append("\n}")
        return "".join(out).encode("utf-8")

    batch = -1
    for name in names:
        shape = arrays[name].shape
        if not shape:
            raise InvalidInput(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and shape[0] != batch:
            raise InvalidInput(f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch}")
        batch = shape[0]
    out.append('{\n    "predictions": [')
    for item in range(batch):
        if several:
            out.append(("," if item else "") + _indent(2) + "{")
            for position, name in enumerate(names):
                out.append(("," if position else "") + _indent(3) + json_string(name) + ": ")
                _write_tensor(tokens[name], arrays[name].shape, 1, 3, True, out)
            out.append(_indent(2) + "}")
        else:
            if item:
                out.append(", ")
            name = names[0]
            _write_tensor(tokens[name], arrays[name].shape, 1, 2, True, out)
    if batch > 0:
        out.append(_indent(1))
    out.append("]\n}")
    return "".join(out).encode("utf-8")


def encode_classification_results(classifications: Sequence[Sequence[tuple[str | bytes, float]]]) -> bytes:
    """``{"results": [[[label, score], ...], ...]}`` as TF Serving writes a ClassificationResult."""
    if not classifications:
        raise InvalidInput("Cannot convert empty ClassificationResults to JSON")
    out = ['{\n    "results": [']
    for index, classes in enumerate(classifications):
        out.append(", " if index else "")
        pairs = (f"[{json_string(label)}, {format_decimal(float(score))}]" for label, score in classes)
        out.append("[" + ", ".join(pairs) + "]")
    out.append(_indent(1) + "]\n}")
    return "".join(out).encode("utf-8")


def encode_regression_results(values: Sequence[float]) -> bytes:
    """``{"results": [v, ...]}`` as TF Serving writes a RegressionResult."""
    if not len(values):
        raise InvalidInput("Cannot convert empty RegressionResults to JSON")
    return ('{\n    "results": [' + ", ".join(format_decimal(float(v)) for v in values) + "]\n}").encode("utf-8")


def error_body(message: str) -> bytes:
    """TF Serving's error body (MakeJsonFromStatus): ``{"error": "<message>"}`` in rapidjson's layout."""
    return ('{\n    "error": ' + json_string(message) + "\n}").encode("utf-8")


def error_body_for(error: ServingError) -> bytes:
    return error_body(error.message)


# Values in error messages, as TF Serving's JsonValueToString prints them.


def value_to_string(value: Any, depth: int = 0) -> str:
    return "".join(_pieces(value, depth))


def _pieces(value: Any, depth: int) -> Iterator[str]:
    """JsonValueToString as a stream of pieces, so a caller can stop early on a large value."""
    if isinstance(value, bool):
        yield "true" if value else "false"
    elif value is None:
        yield "null"
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, float):
        if depth == 0 and math.isfinite(value) and abs(value) <= _FLOAT32_MAX and float(np.float32(value)) == value:
            yield format_decimal(value)
        elif not math.isfinite(value):
            yield format_decimal(value, double=True)
        else:
            yield repr(value)
    elif isinstance(value, str):
        yield json_string(value)
    elif isinstance(value, list | dict):
        if not value:
            yield "[]" if isinstance(value, list) else "{}"
            return
        yield "[" if isinstance(value, list) else "{"
        items = value if isinstance(value, list) else value.items()
        for index, item in enumerate(items):
            yield ("," if index else "") + _indent(depth + 1)
            if isinstance(value, dict):
                yield json_string(item[0]) + ": "
                item = item[1]
            yield from _pieces(item, depth + 1)
        yield _indent(depth) + ("]" if isinstance(value, list) else "}")
    else:
        yield str(value)


_MAX_ECHO_CHARS = 2048


def _document_text(document: Mapping[str, Any]) -> str:
    """The request echoed in an error, as TF Serving does, cut short so a large body cannot make a large
    error (TF Serving's own TODO: "Truncate large values")."""
    pieces: list[str] = []
    size = 0
    for piece in _pieces(dict(document), 0):
        pieces.append(piece)
        size += len(piece)
        if size > _MAX_ECHO_CHARS:
            return "".join(pieces)[:_MAX_ECHO_CHARS] + "..."
    return "".join(pieces)


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


# ---------------------------------------------------------------------------------------------
# Reading requests
# ---------------------------------------------------------------------------------------------

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


def signature_name_of(document: Mapping[str, Any]) -> str:
    """FillSignature: the optional ``signature_name`` ('' when absent)."""
    if "signature_name" not in document:
        return ""
    name = document["signature_name"]
    if not isinstance(name, str):
        raise InvalidInput(
            f"JSON Value: {_document_text(document)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    return name


@dataclass(frozen=True)
class PredictJson:
    signature_name: str  # '' means the default signature
    inputs: dict[str, np.ndarray]
    request_format: RequestFormat


def decode_predict_request(document: Mapping[str, Any], input_dtypes: Mapping[str, int]) -> PredictJson:
    """FillPredictRequestFromJson after the signature is known: ``input_dtypes`` maps the signature's
    input names to TF DataType numbers. Raises InvalidInput with TF Serving's messages."""
    signature_name = signature_name_of(document)
    if not input_dtypes:
        raise InvalidInput(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    has_instances = "instances" in document
    has_inputs = "inputs" in document
    if has_instances and has_inputs:
        raise InvalidInput(
            f"JSON Value: {_document_text(document)} Not formatted correctly expecting only one of "
            "'inputs' or 'instances' keys to exist "
        )
    if has_instances:
        instances = document["instances"]
        if not isinstance(instances, list):
            raise InvalidInput(f"JSON Value: {_document_text(document)} Excepting 'instances' to be an list/array")
        if not instances:
            raise InvalidInput(f"JSON Value: {_document_text(document)} No values in 'instances' array")
        return PredictJson(signature_name, _from_instances(instances, input_dtypes), RequestFormat.ROW)
    if has_inputs:
        return PredictJson(signature_name, _from_inputs(document["inputs"], input_dtypes), RequestFormat.COLUMNAR)
    raise InvalidInput("Missing 'inputs' or 'instances' key")


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _from_instances(instances: list[Any], input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    first = instances[0]
    if not isinstance(first, dict) and len(input_dtypes) > 1:
        raise InvalidInput(
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map"
        )
    objects = isinstance(first, dict) and not _is_b64(first)
    names = sorted(input_dtypes)
    if not objects:
        name = names[0]
        for index, item in enumerate(instances):
            if isinstance(item, dict) and not _is_b64(item):
                raise InvalidInput(f"Expecting value/list but got object at item {index} of input list")
        try:
            return {name: _batched(instances, input_dtypes[name])}
        except _ItemError as error:
            raise InvalidInput(
                f"Failed to process element: {error.index} of 'instances' list. Error: {error.status}"
            ) from None
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
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
            arrays[name] = _batched(columns[name], input_dtypes[name])
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


def _batched(items: list[Any], dtype: int) -> np.ndarray:
    """Stack row-format items of one input; each must have the first item's shape."""
    fast = _fast_array(items, dtype)
    if fast is not None:
        return fast
    rows = []
    first_shape: list[int] | None = None
    first_size = 0
    for index, item in enumerate(items):
        try:
            array = _to_array(item, dtype)
        except ServingError as error:
            raise _ItemError(index, f"{_code_name(error)}: {error.message}") from None
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


def _code_name(error: ServingError) -> str:
    return str(error.grpc_code.name)


def _from_inputs(value: Any, input_dtypes: Mapping[str, int]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or _is_b64(value):
        if len(input_dtypes) > 1:
            raise InvalidInput(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required "
                "as per tensorinfo_map"
            )
        name = next(iter(input_dtypes))
        return {name: _to_array(value, input_dtypes[name])}
    arrays = {}
    for name in sorted(input_dtypes):
        if name not in value:
            raise InvalidInput(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _to_array(value[name], input_dtypes[name])
    return arrays


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fast_array(value: Any, dtype: int) -> np.ndarray | None:
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
        if dtype == DT_FLOAT:
            finite = array[np.isfinite(array)]
            if finite.size and np.abs(finite).max() > _FLOAT32_MAX:
                return None
        result: np.ndarray = array.astype(target)
    elif kind in "iu":
        if dtype == DT_FLOAT and array.size and np.abs(array).max() > 2**24 - 1:
            return None
        if dtype in _SMALL_INTS or dtype == DT_UINT32:
            low, high = (0, 2**32 - 1) if dtype == DT_UINT32 else _INT32
            if array.size and (array.min() < low or array.max() > high):
                return None
        if dtype == DT_UINT64 and array.size and array.min() < 0:
            return None
        result = array.astype(target)
    else:
        return None
    if _contains_bool(value):
        return None
    return result


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


def _to_array(value: Any, dtype: int) -> np.ndarray:
    """FillTensorProto for one JSON value: nested lists of one dense shape (from the first elements)."""
    fast = _fast_array(value, dtype)
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
        f"JSON Value: {value_to_string(value)} Type: {_json_type(value)} is not of expected type: {type_name(dtype)}"
    )


def _scalar(value: Any, dtype: int) -> Any:
    """AddValueToTensor (and base64 objects for strings)."""
    if isinstance(value, dict):
        if dtype != DT_STRING:
            raise _type_error(value, dtype)
        if not _is_b64(value):
            raise InvalidInput(f"JSON Value: {value_to_string(value)} not formatted correctly for base64 data")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("Unable to base64 decode") from None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if dtype in (DT_FLOAT, DT_DOUBLE, DT_HALF):
        if not number:
            raise _type_error(value, dtype)
        limit_int, limit_float = (2**24 - 1, _FLOAT32_MAX) if dtype != DT_DOUBLE else (2**53 - 1, math.inf)
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


# Classify / regress: JSON examples -> tf.Example protos


def decode_examples(document: Mapping[str, Any], method: str = "classify") -> tuple[str, list[Any], Any | None]:
    """FillClassifyRegressRequestFromJson: (signature_name, examples, context or None) as tf.Example
    protos (``serving.protos.Example``)."""
    signature_name = signature_name_of(document)
    context = None
    if "context" in document:
        context = _example(document["context"])
    if "examples" not in document:
        raise InvalidInput(
            f"JSON Value: {_document_text(document)} When "
            f"method is {method}, key 'examples' is expected "
            "and was not found"
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise InvalidInput(f"JSON Value: {_document_text(document)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise InvalidInput(f"JSON Value: {_document_text(document)} 'examples' value is an empty array")
    return signature_name, [_example(item) for item in examples], context


_KINDS = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _example(value: Any) -> Any:
    if not isinstance(value, dict):
        raise InvalidInput(f"Example must be JSON object but got JSON {_json_type(value)}")
    example = protos.Example()
    for name, content in value.items():
        feature = example.features.feature[name]
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
    return example


def _add_feature_value(value: Any, name: str, feature: Any) -> None:
    def need(kind: str) -> None:
        current = feature.WhichOneof("kind")
        if current is not None and current != kind:
            raise InvalidInput(f"Unexpected element type in feature: {name} expecting type: {_KINDS[current]}")

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise InvalidInput(f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}")
    if isinstance(value, bool):
        need("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        need("bytes_list")
        try:
            feature.bytes_list.value.append(base64.b64decode(value["b64"], validate=True))
        except (binascii.Error, ValueError):
            raise InvalidInput("Unable to base64 decode") from None
    elif isinstance(value, str):
        need("bytes_list")
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float):
        need("float_list")
        if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise InvalidInput(
                f"Cannot convert JSON value: {value_to_string(value)} to float without loss of precision."
            )
        feature.float_list.value.append(value)
    else:
        need("int64_list")
        if value > _INT64[1]:
            raise InvalidInput(f"Feature: {name} has uint64 element. Only int64 is supported.")
        feature.int64_list.value.append(value)
