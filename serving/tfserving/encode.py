"""numpy arrays -> TF Serving's REST answers, byte for byte (``MakeJsonFromTensors`` and friends).

rapidjson's PrettyWriter with a 4-space indent; in the row format each example's values on one line;
floats with six significant digits unless that loses precision (then nine, or seventeen for doubles),
whole floats with a trailing ``.0``, ``NaN`` / ``Infinity``; bytes outputs (names ending ``_bytes``)
as ``{"b64": ...}``. Numeric outputs are formatted a whole array at a time and nested by slicing the
flat list of values; strings and empty dimensions take the value-by-value writer.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from serving.errors import InvalidInput
from serving.tfserving.decode import RequestFormat
from serving.tfserving.values import format_decimal, indent, json_string

_B64_MARK = "\x00b64:"  # token prefix: write as {"b64": ...}, whose layout depends on depth
_INDENTS = [indent(depth) for depth in range(16)]


def _ind(depth: int) -> str:
    return _INDENTS[depth] if depth < len(_INDENTS) else indent(depth)


_FLOAT32 = struct.Struct("<f")
_SMALL = 64  # values; below this a Python loop beats numpy's per-call overhead


def float_tokens(array: np.ndarray) -> list[str]:
    """``format_decimal`` over a float array (flattened, C order), vectorised where it can be."""
    flat = array.reshape(-1)
    if flat.dtype == np.float16:
        flat = flat.astype(np.float32)
    double = flat.dtype == np.float64
    values = flat.tolist()
    texts = list(map("{:.6g}".format, values))
    if "n" in "".join(texts):  # nan or inf somewhere: TF Serving's NaN / Infinity, value by value
        return [format_decimal(v, double) for v in values]
    wide = ("{:.17g}" if double else "{:.9g}").format  # when six digits lose precision
    if len(texts) <= _SMALL:
        if double:
            texts = [t if float(t) == v else wide(v) for t, v in zip(texts, values, strict=True)]
        else:
            pack, unpack = _FLOAT32.pack, _FLOAT32.unpack
            texts = [t if unpack(pack(float(t)))[0] == v else wide(v) for t, v in zip(texts, values, strict=True)]
    else:
        back = np.array(texts, dtype=np.float64)
        mismatch = (back if double else back.astype(np.float32)) != flat
        for index in np.flatnonzero(mismatch).tolist():
            texts[index] = wide(values[index])
    return [t if "." in t or "e" in t else t + ".0" for t in texts]


def _tokens(name: str, array: np.ndarray) -> list[str]:
    """Each value of an output tensor as TF Serving writes it (C order)."""
    kind = array.dtype.kind
    if kind == "f":
        return float_tokens(array)
    if kind == "b":
        return ["true" if v else "false" for v in array.reshape(-1).tolist()]
    if kind in "iu":
        return list(map(str, array.reshape(-1).tolist()))
    if kind in "OSU":
        items = array.reshape(-1).tolist()
        if name.endswith("_bytes"):
            return [_B64_MARK + base64.b64encode(_as_bytes(v)).decode("ascii") for v in items]
        return [json_string(v if isinstance(v, bytes | str) else str(v)) for v in items]
    raise InvalidInput(f"Failed to write JSON value for tensor type: {array.dtype}")


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _nested(tokens: list[str], shape: Sequence[int], depth: int, single_line: bool) -> list[str]:
    """Numeric tokens nested by ``shape`` (outermost dimension not joined): one text per outermost item.
    ``depth`` is the number of containers open around the innermost-but-``len(shape)`` level."""
    items = tokens
    for level in range(len(shape) - 1, -1, -1):
        size, at = shape[level], depth + level
        if single_line:
            separator, opening, closing = ", ", "[", "]"
        else:
            separator, opening, closing = "," + _ind(at + 1), "[" + _ind(at + 1), _ind(at) + "]"
        items = [opening + separator.join(items[i : i + size]) + closing for i in range(0, len(items), size)]
    return items


def _simple(arrays: Mapping[str, np.ndarray]) -> bool:
    """Arrays the slicing writer handles: numeric or boolean, no empty dimension."""
    return all(a.dtype.kind in "fiub" and a.size and 0 not in a.shape for a in arrays.values())


def encode_predict_response(outputs: Mapping[str, np.ndarray], request_format: RequestFormat) -> bytes:
    """The body TF Serving answers a REST predict with (``predictions`` or ``outputs``)."""
    if not outputs:
        raise InvalidInput("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    several = len(names) > 1
    if request_format is RequestFormat.COLUMNAR:
        return _columnar(names, arrays, several)
    batch = -1
    for name in names:
        shape = arrays[name].shape
        if not shape:
            raise InvalidInput(f"Tensor name: {name} has no shape information ")
        if batch >= 0 and shape[0] != batch:
            raise InvalidInput(f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch}")
        batch = shape[0]
    if not _simple(arrays):
        return _rows_by_value(names, arrays, batch, several)
    rows = {
        name: _nested(_tokens(name, arrays[name]), arrays[name].shape[1:], 3 if several else 2, True) for name in names
    }
    if several:
        keys = [("," if position else "") + _ind(3) + json_string(name) + ": " for position, name in enumerate(names)]
        items = []
        for item in range(batch):
            fields = "".join(key + rows[name][item] for key, name in zip(keys, names, strict=True))
            items.append(_ind(2) + "{" + fields + _ind(2) + "}")
        text = '{\n    "predictions": [' + ",".join(items) + _ind(1) + "]\n}"
    else:
        text = '{\n    "predictions": [' + ", ".join(rows[names[0]]) + _ind(1) + "]\n}"
    return text.encode("utf-8")


def _columnar(names: list[str], arrays: Mapping[str, np.ndarray], several: bool) -> bytes:
    if not _simple(arrays) or any(not arrays[name].shape for name in names):
        return _columnar_by_value(names, arrays, several)
    out = ['{\n    "outputs": ']
    if several:
        out.append("{")
    depth = 2 if several else 1
    for position, name in enumerate(names):
        if several:
            out.append(("," if position else "") + _ind(2) + json_string(name) + ": ")
        array = arrays[name]
        rows = _nested(_tokens(name, array), array.shape[1:], depth + 1, False)
        out.append("[" + _ind(depth + 1) + ("," + _ind(depth + 1)).join(rows) + _ind(depth) + "]")
    if several:
        out.append(_ind(1) + "}")
    out.append("\n}")
    return "".join(out).encode("utf-8")


# The value-by-value writer: strings, b64 objects, empty dimensions, scalars.


def _write_token(token: str, depth: int, out: list[str]) -> None:
    if token.startswith(_B64_MARK):
        encoded = token[len(_B64_MARK) :]
        out.append("{" + _ind(depth + 1) + '"b64": "' + encoded + '"' + _ind(depth) + "}")
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
            out.append(_ind(depth + 1))
        _write_tensor(tokens, shape, dim + 1, depth + 1, single_line, out)
    if size and not single_line:
        out.append(_ind(depth))
    out.append("]")


def _columnar_by_value(names: list[str], arrays: Mapping[str, np.ndarray], several: bool) -> bytes:
    tokens = {name: iter(_tokens(name, arrays[name])) for name in names}
    out = ['{\n    "outputs": ']
    if several:
        out.append("{")
    for position, name in enumerate(names):
        if several:
            out.append(("," if position else "") + _ind(2) + json_string(name) + ": ")
        _write_tensor(tokens[name], arrays[name].shape, 0, 2 if several else 1, False, out)
    if several:
        out.append(_ind(1) + "}")
    out.append("\n}")
    return "".join(out).encode("utf-8")


def _rows_by_value(names: list[str], arrays: Mapping[str, np.ndarray], batch: int, several: bool) -> bytes:
    tokens = {name: iter(_tokens(name, arrays[name])) for name in names}
    out = ['{\n    "predictions": [']
    for item in range(batch):
        if several:
            out.append(("," if item else "") + _ind(2) + "{")
            for position, name in enumerate(names):
                out.append(("," if position else "") + _ind(3) + json_string(name) + ": ")
                _write_tensor(tokens[name], arrays[name].shape, 1, 3, True, out)
            out.append(_ind(2) + "}")
        else:
            if item:
                out.append(", ")
            _write_tensor(tokens[names[0]], arrays[names[0]].shape, 1, 2, True, out)
    if batch > 0:
        out.append(_ind(1))
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
    out.append(_ind(1) + "]\n}")
    return "".join(out).encode("utf-8")


def encode_regression_results(values: Sequence[float]) -> bytes:
    """``{"results": [v, ...]}`` as TF Serving writes a RegressionResult."""
    if not len(values):
        raise InvalidInput("Cannot convert empty RegressionResults to JSON")
    return ('{\n    "results": [' + ", ".join(format_decimal(float(v)) for v in values) + "]\n}").encode("utf-8")


def error_body(message: str) -> bytes:
    """TF Serving's error body (MakeJsonFromStatus): ``{"error": "<message>"}`` in rapidjson's layout."""
    return ('{\n    "error": ' + json_string(message) + "\n}").encode("utf-8")
