"""The Open Inference Protocol's datatypes and how they map to numpy and to TF's DataType.

BF16 is part of the protocol but has no numpy dtype (nor a place in ``serving.tensors``), so it is
named here and refused with a clear message wherever a tensor would be built from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.errors import InvalidInput
from serving.tensors import DT

# datatype -> numpy dtype (object for BYTES: elements are bytes)
NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
UNSUPPORTED = ("BF16",)
ALL = (*NUMPY, *UNSUPPORTED)

_BY_NUMPY: dict[np.dtype[Any], str] = {dtype: name for name, dtype in NUMPY.items() if name != "BYTES"}

# TF DataType number -> datatype (what a signature's TensorInfo.dtype becomes in model metadata)
_BY_TF: dict[int, str] = {
    DT["DT_BOOL"].number: "BOOL",
    DT["DT_UINT8"].number: "UINT8",
    DT["DT_UINT16"].number: "UINT16",
    DT["DT_UINT32"].number: "UINT32",
    DT["DT_UINT64"].number: "UINT64",
    DT["DT_INT8"].number: "INT8",
    DT["DT_INT16"].number: "INT16",
    DT["DT_INT32"].number: "INT32",
    DT["DT_INT64"].number: "INT64",
    DT["DT_HALF"].number: "FP16",
    DT["DT_FLOAT"].number: "FP32",
    DT["DT_DOUBLE"].number: "FP64",
    DT["DT_STRING"].number: "BYTES",
    DT["DT_BFLOAT16"].number: "BF16",
}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype of a datatype; InvalidInput for an unknown one or for BF16."""
    dtype = NUMPY.get(datatype)
    if dtype is None:
        if datatype in UNSUPPORTED:
            raise InvalidInput(f"datatype {datatype} is not supported by this server")
        raise InvalidInput(f"unknown datatype {datatype!r}; the protocol's datatypes are {', '.join(ALL)}")
    return dtype


def of_array(array: np.ndarray) -> str:
    """The datatype of an array (bytes, str and object arrays are BYTES)."""
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    name = _BY_NUMPY.get(array.dtype.newbyteorder("=") if array.dtype.byteorder == ">" else array.dtype)
    if name is None:
        raise InvalidInput(f"an array of {array.dtype} has no Open Inference Protocol datatype")
    return name


def of_tf(number: int) -> str:
    """The datatype of a TF DataType number (TF types the protocol lacks keep TF's own name)."""
    name = _BY_TF.get(number)
    if name is not None:
        return name
    from serving.tensors import dtype_name

    return dtype_name(number)
