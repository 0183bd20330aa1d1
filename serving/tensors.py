"""TensorProto <-> numpy, without TensorFlow.

Follows ``tf.make_ndarray`` / ``tf.make_tensor_proto``: numeric arrays travel in ``tensor_content``
(little-endian bytes); a typed ``*_val`` field with fewer values than the shape is broadcast from its
last value, as TensorFlow does; strings travel as ``string_val``.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from serving import protos
from serving.errors import InvalidInput

DT = protos.DataType.values_by_name

# DataType number -> (numpy dtype, name of the repeated *_val field that holds it)
_NUMPY_BY_DTYPE: dict[int, tuple[np.dtype[Any], str]] = {
    DT["DT_FLOAT"].number: (np.dtype(np.float32), "float_val"),
    DT["DT_DOUBLE"].number: (np.dtype(np.float64), "double_val"),
    DT["DT_INT32"].number: (np.dtype(np.int32), "int_val"),
    DT["DT_UINT8"].number: (np.dtype(np.uint8), "int_val"),
    DT["DT_INT16"].number: (np.dtype(np.int16), "int_val"),
    DT["DT_INT8"].number: (np.dtype(np.int8), "int_val"),
    DT["DT_UINT16"].number: (np.dtype(np.uint16), "int_val"),
    DT["DT_INT64"].number: (np.dtype(np.int64), "int64_val"),
    DT["DT_UINT32"].number: (np.dtype(np.uint32), "uint32_val"),
    DT["DT_UINT64"].number: (np.dtype(np.uint64), "uint64_val"),
    DT["DT_BOOL"].number: (np.dtype(np.bool_), "bool_val"),
    DT["DT_HALF"].number: (np.dtype(np.float16), "half_val"),
    DT["DT_COMPLEX64"].number: (np.dtype(np.complex64), "scomplex_val"),
    DT["DT_COMPLEX128"].number: (np.dtype(np.complex128), "dcomplex_val"),
}
DT_STRING = DT["DT_STRING"].number
_DTYPE_BY_NUMPY: dict[np.dtype[Any], int] = {np_dtype: number for number, (np_dtype, _) in _NUMPY_BY_DTYPE.items()}
_NATIVE_IS_LITTLE = sys.byteorder == "little"
_LITTLE_ENDIAN = {np_dtype: np_dtype.newbyteorder("<") for np_dtype, _ in _NUMPY_BY_DTYPE.values()}


def dtype_name(number: int) -> str:
    value = protos.DataType.values_by_number.get(number)
    return value.name if value is not None else f"DataType({number})"


def numpy_dtype(number: int) -> np.dtype[Any]:
    """The numpy dtype for a TF DataType number (object for DT_STRING)."""
    if number == DT_STRING:
        return np.dtype(object)
    try:
        return _NUMPY_BY_DTYPE[number][0]
    except KeyError:
        raise InvalidInput(f"Unsupported tensor dtype: {dtype_name(number)}") from None


def tf_dtype(array_dtype: np.dtype[Any]) -> int:
    """The TF DataType number for a numpy dtype (bytes, str and object arrays map to DT_STRING)."""
    if array_dtype.kind in ("O", "S", "U"):
        return DT_STRING
    try:
        return _DTYPE_BY_NUMPY[np.dtype(array_dtype)]
    except KeyError:
        raise InvalidInput(f"Unsupported array dtype: {array_dtype}") from None


def shape_of(tensor: Any) -> tuple[int, ...]:
    if tensor.tensor_shape.unknown_rank:
        raise InvalidInput("Tensor shape has unknown rank")
    dims = tuple(int(d.size) for d in tensor.tensor_shape.dim)
    if any(d < 0 for d in dims):
        raise InvalidInput(f"Tensor shape has a negative dimension: {list(dims)}")
    return dims


def to_numpy(tensor: Any) -> np.ndarray:
    """Decode a TensorProto. Raises InvalidInput when its content does not fit its shape or dtype."""
    shape = shape_of(tensor)
    count = math.prod(shape)
    if tensor.dtype == DT_STRING:
        strings = np.array(list(tensor.string_val), dtype=object)
        return _fill(strings, count, shape, np.dtype(object), b"")
    np_dtype, field = _NUMPY_BY_DTYPE.get(tensor.dtype, (None, ""))
    if np_dtype is None:
        raise InvalidInput(f"Unsupported tensor dtype: {dtype_name(tensor.dtype)}")
    if tensor.tensor_content:
        content = tensor.tensor_content
        if len(content) != count * np_dtype.itemsize:
            raise InvalidInput(
                f"tensor_content holds {len(content)} bytes, but shape {list(shape)} of "
                f"{dtype_name(tensor.dtype)} needs {count * np_dtype.itemsize}"
            )
        # a view of the message's bytes (read-only) when the machine is little-endian, as TF's is
        return np.frombuffer(content, dtype=_LITTLE_ENDIAN[np_dtype]).astype(np_dtype, copy=False).reshape(shape)
    raw = getattr(tensor, field)
    values: np.ndarray
    if np_dtype == np.float16:
        values = np.array(raw, dtype=np.uint16).view(np.float16)
    elif np_dtype.kind == "c":
        pairs = np.array(raw, dtype=np.float32 if np_dtype == np.complex64 else np.float64)
        values = pairs[0::2].astype(np_dtype)
        values.imag = pairs[1::2]
    else:
        values = np.array(raw, dtype=np_dtype)
    return _fill(values.astype(np_dtype), count, shape, np_dtype, 0)


def _fill(values: np.ndarray, count: int, shape: tuple[int, ...], np_dtype: np.dtype[Any], zero: Any) -> np.ndarray:
    if values.size == count:
        return values.reshape(shape)
    if values.size > count:
        raise InvalidInput(f"Tensor holds {values.size} values but its shape {list(shape)} has {count}")
    filled = np.full(count, values[-1] if values.size else zero, dtype=np_dtype)
    filled[: values.size] = values
    return filled.reshape(shape)


def from_numpy(array: Any, out: Any = None) -> Any:
    """Encode an array (or nested list, or bytes/str scalars) as a TensorProto.

    ``out`` may be an existing TensorProto field (e.g. ``request.inputs["image"]``) to fill in place.
    """
    array = np.asarray(array)
    tensor = out if out is not None else protos.TensorProto()
    tensor.dtype = tf_dtype(array.dtype)
    for size in array.shape:
        tensor.tensor_shape.dim.add().size = size
    if tensor.dtype == DT_STRING:
        tensor.string_val.extend(
            item if isinstance(item, bytes) else str(item).encode("utf-8") for item in array.reshape(-1)
        )
    else:
        if _NATIVE_IS_LITTLE and array.dtype.isnative:
            tensor.tensor_content = array.tobytes()  # C order, whatever the array's strides
        else:
            tensor.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return tensor
