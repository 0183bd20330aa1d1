"""``inference.ModelInferRequest`` / ``ModelInferResponse`` <-> InferRequest and named arrays.

Inputs come as typed ``contents`` or as ``raw_input_contents`` (one entry per input, in order; what
tritonclient sends); answers carry ``raw_output_contents``, as Triton's do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from serving import protos
from serving.errors import InvalidInput
from serving.v2 import raw
from serving.v2.infer import InferRequest, RequestedOutput, check_datatype, element_count, parameters_of

# datatype -> the InferTensorContents field that carries it (FP16 and BF16 travel raw only)
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameter_value(parameter: Any) -> Any:
    """The Python value of an InferParameter (its oneof), None when unset."""
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None


def decode_request(message: Any) -> InferRequest:
    """A ModelInferRequest as an InferRequest; InvalidInput names what is malformed."""
    request = InferRequest(model=message.model_name, version=message.model_version, inputs={}, id=message.id)
    if message.parameters:
        parameters_of(request, {key: parameter_value(value) for key, value in message.parameters.items()})
    raw_contents = message.raw_input_contents
    if raw_contents and len(raw_contents) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents holds {len(raw_contents)} entries for {len(message.inputs)} inputs; "
            "send one per input, or none and use contents"
        )
    if not message.inputs:
        raise InvalidInput("the request has no inputs")
    for index, tensor in enumerate(message.inputs):
        name = tensor.name
        where = f"input '{name}'"
        if name in request.inputs:
            raise InvalidInput(f"input '{name}' is given twice")
        datatype = tensor.datatype
        dtype = check_datatype(name, datatype)
        shape, count = element_count(list(tensor.shape), where)
        has_contents = tensor.HasField("contents")
        if raw_contents:
            if has_contents and tensor.contents.ByteSize():
                raise InvalidInput(f"{where} has contents while the request uses raw_input_contents; send one")
            array = raw.decode(raw_contents[index], datatype, dtype, shape, count, where)
        else:
            array = _from_contents(tensor.contents, datatype, dtype, shape, count, where)
        request.inputs[name] = array
        request.datatypes[name] = datatype
    if message.outputs:
        request.outputs = [RequestedOutput(output.name) for output in message.outputs]
        for output in message.outputs:
            classification = output.parameters.get("classification")
            if classification is not None and parameter_value(classification):
                raise InvalidInput(f"output '{output.name}': the classification extension is not supported")
    return request


def _from_contents(
    contents: Any, datatype: str, dtype: np.dtype[Any], shape: tuple[int, ...], count: int, where: str
) -> Any:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"{where}: {datatype} data travels in raw_input_contents only")
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidInput(f"{where}: {len(values)} values in {field}, but shape {list(shape)} holds {count}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    wide = np.asarray(values, dtype=np.float64 if dtype.kind == "f" else np.int64 if dtype.kind != "u" else np.uint64)
    if dtype.kind in "iu" and count and wide.dtype != dtype:
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidInput(f"{where}: a value in {field} is out of the range of {datatype}")
    return wide.astype(dtype).reshape(shape)


def encode_response(model: str, version: str, request_id: str, outputs: Sequence[tuple[str, str, np.ndarray]]) -> Any:
    """A ModelInferResponse with ``raw_output_contents``; ``outputs`` holds (name, datatype, array)."""
    response = protos.ModelInferResponse(model_name=model, model_version=version, id=request_id)
    for name, datatype, array in outputs:
        tensor = response.outputs.add()
        tensor.name = name
        tensor.datatype = datatype
        tensor.shape.extend(array.shape)
        response.raw_output_contents.append(raw.encode(array, datatype))
    return response
