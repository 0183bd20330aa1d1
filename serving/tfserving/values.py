"""JSON values as TF Serving prints them: rapidjson's layout, its float formatting, and the
``JsonValueToString`` echo of a request inside an error message."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from serving.tensors import DT, DT_STRING, dtype_name

__all__ = ["DT_STRING"]  # re-exported beside the other DataType numbers
DT_FLOAT = DT["DT_FLOAT"].number
DT_DOUBLE = DT["DT_DOUBLE"].number
DT_HALF = DT["DT_HALF"].number
DT_INT64 = DT["DT_INT64"].number
DT_BOOL = DT["DT_BOOL"].number
DT_UINT32 = DT["DT_UINT32"].number
DT_UINT64 = DT["DT_UINT64"].number
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_ECHO_CHARS = 2048


def type_name(number: int) -> str:
    """TF's DataTypeString: DT_FLOAT -> 'float'."""
    name = dtype_name(number)
    return name[3:].lower() if name.startswith("DT_") else name


def indent(depth: int) -> str:
    return "\n" + "    " * depth


def json_string(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return json.dumps(text, ensure_ascii=False)


def format_decimal(value: float, double: bool = False) -> str:
    """One float as TF Serving's WriteDecimal prints it: six significant digits unless that loses
    precision (then 9, or 17 for doubles), whole numbers with ``.0``, ``NaN`` / ``Infinity``."""
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


def value_to_string(value: Any, depth: int = 0) -> str:
    """TF Serving's JsonValueToString of a parsed JSON value."""
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
        if depth == 0 and math.isfinite(value) and abs(value) <= FLOAT32_MAX and float(np.float32(value)) == value:
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
            yield ("," if index else "") + indent(depth + 1)
            if isinstance(value, dict):
                yield json_string(item[0]) + ": "
                item = item[1]
            yield from _pieces(item, depth + 1)
        yield indent(depth) + ("]" if isinstance(value, list) else "}")
    else:
        yield str(value)


def document_text(document: Mapping[str, Any]) -> str:
    """The request echoed in an error, as TF Serving does, cut short so a large body cannot make a large
    error (TF Serving's own TODO: "Truncate large values")."""
    pieces: list[str] = []
    size = 0
    for piece in _pieces(dict(document), 0):
        pieces.append(piece)
        size += len(piece)
        if size > MAX_ECHO_CHARS:
            return "".join(pieces)[:MAX_ECHO_CHARS] + "..."
    return "".join(pieces)


def json_type(value: Any) -> str:
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
