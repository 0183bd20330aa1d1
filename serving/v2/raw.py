"""Tensors as raw bytes: the binary tensor data extension (REST) and ``raw_*_contents`` (gRPC).

Fixed-size datatypes are their elements in row-major order, little-endian; BOOL is one byte per
element; BYTES is each element as a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

import numpy as np

from serving.errors import InvalidInput

_LENGTH = struct.Struct("<I")
_NATIVE_IS_LITTLE = sys.byteorder == "little"
_LITTLE: dict[np.dtype[Any], np.dtype[Any]] = {}  # dtype -> its little-endian form (newbyteorder costs a new dtype)


def _little(dtype: np.dtype[Any]) -> np.dtype[Any]:
    found = _LITTLE.get(dtype)
    if found is None:
        found = _LITTLE[dtype] = dtype.newbyteorder("<")
    return found


def decode(buffer: Any, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], count: int, where: str) -> Any:
    """The array held by ``buffer`` (bytes or memoryview); InvalidInput when its size does not fit."""
    if datatype == "BYTES":
        return decode_bytes(buffer, count, where).reshape(shape)
    expected = count * dtype.itemsize
    if len(buffer) != expected:
        raise InvalidInput(
            f"{where}: {len(buffer)} bytes of data, but shape {list(shape)} of {datatype} needs {expected}"
        )
    if datatype == "BOOL":
        return np.frombuffer(buffer, dtype=np.uint8).astype(np.bool_).reshape(shape)
    return np.frombuffer(buffer, dtype=_little(dtype)).reshape(shape)


def decode_bytes(buffer: Any, count: int, where: str) -> np.ndarray:
    """``count`` length-prefixed elements that fill ``buffer`` exactly, as an object array of bytes."""
    view = memoryview(buffer).cast("B")
    size = len(view)
    if count > size // 4:  # every element takes at least its 4-byte length
        raise InvalidInput(f"{where}: {size} bytes of data cannot hold the {count} BYTES elements of its shape")
    elements = np.empty(count, dtype=object)
    offset = index = 0
    while offset < size:
        if index >= count:
            raise InvalidInput(f"{where}: more than the {count} BYTES elements its shape holds")
        if offset + 4 > size:
            raise InvalidInput(f"{where}: BYTES element {index} is cut off in its 4-byte length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > size:
            raise InvalidInput(f"{where}: BYTES element {index} declares {length} bytes, but {size - offset} remain")
        elements[index] = bytes(view[offset : offset + length])
        offset += length
        index += 1
    if index != count:
        raise InvalidInput(f"{where}: {index} BYTES elements, but its shape holds {count}")
    return elements


def encode(array: np.ndarray, datatype: str) -> bytes:
    """The raw bytes of an array of ``datatype``."""
    if datatype == "BYTES":
        return encode_bytes(array)
    if datatype == "BOOL":
        return np.ascontiguousarray(array, dtype=np.bool_).tobytes()
    if _NATIVE_IS_LITTLE and array.dtype.isnative:
        return array.tobytes()  # row-major whatever the strides (an answer's rows are views of a batch)
    return np.ascontiguousarray(array, dtype=_little(array.dtype)).tobytes()


def encode_bytes(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        value = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LENGTH.pack(len(value)))
        parts.append(value)
    return b"".join(parts)
