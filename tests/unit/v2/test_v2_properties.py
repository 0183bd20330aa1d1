"""Property tests for the Open Inference Protocol decoders (binary tensor data extension, JSON, gRPC).

For any body: either the decoded arrays are exactly what was sent, or the error is InvalidInput (400)
naming the problem. Bodies are valid requests of random shapes and every datatype, then truncated,
extended, given wrong sizes or header lengths, or replaced by random bytes. Anything else escaping a
decoder would be a 500. ``DECODER_EXAMPLES`` sets the examples per test (the reliability fuzz check
raises it).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import protos
from serving.errors import InvalidInput
from serving.v2 import datatypes, grpc_codec, raw, rest

EXAMPLES = int(os.environ.get("DECODER_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=False
)
SUPPORTED = tuple(datatypes.NUMPY)
shapes = st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=3)


def _array(draw: Any, datatype: str, shape: list[int]) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=6), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = datatypes.NUMPY[datatype]
    data = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    if datatype == "BOOL":
        return np.frombuffer(data, np.uint8).astype(bool).reshape(shape)
    return np.frombuffer(data, dtype.newbyteorder("<")).reshape(shape)


@st.composite
def tensors(draw: Any) -> tuple[str, str, np.ndarray]:
    datatype = draw(st.sampled_from(SUPPORTED))
    shape = draw(shapes)
    return draw(st.text(min_size=1, max_size=5)), datatype, _array(draw, datatype, shape)


@st.composite
def binary_requests(draw: Any) -> tuple[list[tuple[str, str, np.ndarray]], bytes, int]:
    chosen = draw(st.lists(tensors(), min_size=1, max_size=3, unique_by=lambda t: t[0]))
    inputs, tail = [], []
    for name, datatype, array in chosen:
        data = raw.encode(array, datatype)
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(data)},
            }
        )
        tail.append(data)
    header = orjson.dumps({"inputs": inputs})
    return chosen, header + b"".join(tail), len(header)


def _same(decoded: np.ndarray, sent: np.ndarray) -> bool:
    if decoded.shape != sent.shape or decoded.dtype != sent.dtype:
        return False
    if sent.dtype.kind == "f":  # compare bit patterns: NaNs with payloads come back as they went
        return decoded.tobytes() == sent.tobytes()
    return bool(np.array_equal(decoded, sent))


@SETTINGS
@given(binary_requests())
def test_binary_requests_decode_to_what_was_sent(case: Any) -> None:
    chosen, body, header_length = case
    request = rest.decode_request(body, str(header_length), "m", "")
    assert list(request.inputs) == [name for name, _, _ in chosen]
    for name, datatype, array in chosen:
        assert request.datatypes[name] == datatype
        assert _same(request.inputs[name], array)


@SETTINGS
@given(binary_requests(), st.integers(min_value=1, max_value=64))
def test_truncated_binary_data_is_a_400(case: Any, cut: int) -> None:
    _, body, header_length = case
    tail = len(body) - header_length
    if tail == 0:
        return
    with pytest.raises(InvalidInput, match="binary"):
        rest.decode_request(body[: len(body) - min(cut, tail)], str(header_length), "m", "")


@SETTINGS
@given(binary_requests(), st.binary(min_size=1, max_size=64))
def test_overlong_binary_data_is_a_400(case: Any, extra: bytes) -> None:
    _, body, header_length = case
    with pytest.raises(InvalidInput, match="after the last input"):
        rest.decode_request(body + extra, str(header_length), "m", "")


@SETTINGS
@given(binary_requests(), st.integers(min_value=-3, max_value=3).filter(bool))
def test_a_wrong_binary_data_size_is_a_400(case: Any, change: int) -> None:
    _chosen, body, header_length = case
    document = orjson.loads(body[:header_length])
    document["inputs"][0]["parameters"]["binary_data_size"] += change
    header = orjson.dumps(document)
    with pytest.raises(InvalidInput):
        rest.decode_request(header + body[header_length:], str(len(header)), "m", "")


@SETTINGS
@given(binary_requests(), st.one_of(st.integers(min_value=-5, max_value=10**6).map(str), st.text(max_size=8)))
def test_any_header_length_decodes_or_is_a_400(case: Any, header_length: str) -> None:
    _, body, _ = case
    with contextlib.suppress(InvalidInput):
        rest.decode_request(body, header_length, "m", "")


@SETTINGS
@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(min_value=0, max_value=250).map(str)))
def test_random_bodies_decode_or_are_a_400(body: bytes, header_length: str | None) -> None:
    with contextlib.suppress(InvalidInput):
        rest.decode_request(body, header_length, "m", "")


@SETTINGS
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=40))
def test_bytes_elements_decode_or_are_a_400(buffer: bytes, count: int) -> None:
    try:
        elements = raw.decode_bytes(buffer, count, "input 'x'")
    except InvalidInput:
        return
    assert len(elements) == count
    assert raw.encode_bytes(elements) == buffer  # only an exact fill decodes


@SETTINGS
@given(st.lists(st.binary(max_size=10), max_size=8))
def test_bytes_elements_round_trip(items: list[bytes]) -> None:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    encoded = raw.encode_bytes(array)
    assert encoded == b"".join(struct.pack("<I", len(item)) + item for item in items)
    assert list(raw.decode_bytes(encoded, len(items), "x")) == items


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
json_data = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5), max_leaves=40)


@SETTINGS
@given(st.sampled_from((*datatypes.ALL, "FLOAT", "")), st.lists(st.integers(-1, 5), max_size=3), json_data)
def test_any_json_tensor_decodes_to_its_shape_and_dtype_or_is_a_400(datatype: str, shape: list[int], data: Any) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}).encode()
    try:
        request = rest.decode_request(body, None, "m", "")
    except InvalidInput:
        return
    array = request.inputs["x"]
    assert array.shape == tuple(shape)
    assert array.dtype == datatypes.NUMPY[datatype]


@SETTINGS
@given(tensors())
def test_json_tensors_round_trip(tensor: tuple[str, str, np.ndarray]) -> None:
    name, datatype, array = tensor
    if datatype == "BYTES":
        strings = [item.decode("utf-8", "replace") for item in array.reshape(-1)]
        array = np.empty(len(strings), dtype=object)
        array[:] = [text.encode("utf-8") for text in strings]
        array = array.reshape(tensor[2].shape)
    elif array.dtype.kind == "f":  # JSON has no NaN or infinity
        array = np.where(np.isfinite(array), array, 0).astype(array.dtype)
    body, header_length = rest.encode_response("m", "1", "", [(name, datatype, array, False)])
    assert header_length is None
    data = orjson.loads(body)["outputs"][0]
    request = rest.decode_request(orjson.dumps({"inputs": [{**data, "name": name}]}), None, "m", "")
    np.testing.assert_array_equal(request.inputs[name], array)


@SETTINGS
@given(tensors(), st.booleans())
def test_grpc_tensors_round_trip(tensor: tuple[str, str, np.ndarray], typed: bool) -> None:
    name, datatype, array = tensor
    message = protos.ModelInferRequest(model_name="m")
    item = message.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
    field = grpc_codec.CONTENTS_FIELD.get(datatype)
    if typed and field is not None:
        values = array.reshape(-1).tolist()
        getattr(item.contents, field).extend(values)
    else:
        message.raw_input_contents.append(raw.encode(array, datatype))
    decoded = grpc_codec.decode_request(protos.ModelInferRequest.FromString(message.SerializeToString()))
    assert decoded.datatypes[name] == datatype
    if typed and array.dtype.kind == "f":  # typed floats go through Python floats: NaN payloads may change
        np.testing.assert_array_equal(decoded.inputs[name], array)
        assert decoded.inputs[name].dtype == array.dtype
    else:
        assert _same(decoded.inputs[name], array)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_grpc_messages_decode_or_are_a_400(data: bytes) -> None:
    try:
        message = protos.ModelInferRequest.FromString(data)
    except Exception:
        return  # grpc hands such bytes to the front as Undecodable (tested with the front)
    with contextlib.suppress(InvalidInput):
        grpc_codec.decode_request(message)
