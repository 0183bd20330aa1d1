from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.errors import InvalidInput
from serving.tfserving import decode, encode, examples, values
from serving.tfserving.decode import RequestFormat

FLOAT = values.DT_FLOAT
STRING = values.DT_STRING


def _decode(body: bytes, dtypes: dict[str, int]) -> decode.PredictJson:
    return decode.decode_predict_request(decode.parse_json_object(body), dtypes)


def test_row_format_answers_like_tf_serving_half_plus_two() -> None:
    request = _decode(b'{"instances": [1.0, 2.0, 5.0]}', {"x": FLOAT})
    assert request.request_format is RequestFormat.ROW
    np.testing.assert_array_equal(request.inputs["x"], np.array([1, 2, 5], np.float32))
    body = encode.encode_predict_response({"y": np.array([2.5, 3.0, 4.5], np.float32)}, RequestFormat.ROW)
    assert body == b'{\n    "predictions": [2.5, 3.0, 4.5\n    ]\n}'


def test_columnar_format_writes_one_value_per_line() -> None:
    body = encode.encode_predict_response({"y": np.array([2.5, 3.0], np.float32)}, RequestFormat.COLUMNAR)
    assert body == b'{\n    "outputs": [\n        2.5,\n        3.0\n    ]\n}'


def test_several_outputs_are_objects_sorted_by_name() -> None:
    outputs = {"probabilities": np.array([[0.25, 0.75]], np.float32), "class_id": np.array([1], np.int64)}
    body = encode.encode_predict_response(outputs, RequestFormat.ROW)
    assert orjson.loads(body) == {"predictions": [{"class_id": 1, "probabilities": [0.25, 0.75]}]}
    assert body.startswith(b'{\n    "predictions": [\n        {\n            "class_id": 1,')


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (3.0, "3.0"),
        (9e6, "9e+06"),
        (1e-7, "1e-07"),
        (1 / 3, "0.333333343"),
        (float("nan"), "NaN"),
    ],
)
def test_floats_print_as_tf_serving_writes_them(value: float, text: str) -> None:
    array = np.array([value], np.float32)
    body = encode.encode_predict_response({"y": array}, RequestFormat.ROW).decode()
    assert body.split("[")[1].split("\n")[0] == text


def test_bytes_outputs_travel_as_b64() -> None:
    body = encode.encode_predict_response({"out_bytes": np.array([b"\x00\xff"], object)}, RequestFormat.ROW)
    assert orjson.loads(body) == {"predictions": [{"b64": "AP8="}]}


def test_b64_string_inputs_are_decoded() -> None:
    request = _decode(b'{"instances": [{"b64": "aGk="}, "plain"]}', {"image_bytes": STRING})
    assert request.inputs["image_bytes"].tolist() == [b"hi", b"plain"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "JSON Parse error: The document is empty"),
        (b"{}", "Missing 'inputs' or 'instances' key"),
        (b'{"instances": []}', "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array"),
        (
            b'{"instances": [1.0, true]}',
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: true Type: True is not of expected type: float",
        ),
        (
            b'{"instances": [[1.0], [1.0, 2.0]]}',
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting tensor size: 1 but got: 2",
        ),
        (b'{"inputs": [16777217]}', "Cannot convert JSON value: 16777217 to float without loss"),
        (b'{"inputs": "x"}', 'JSON Value: "x" Type: String is not of expected type: float'),
        (b'{"inputs": [1], "signature_name": 3}', "'signature_name' key must be a string"),
    ],
)
def test_malformed_requests_get_tf_serving_messages(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        _decode(body, {"x": FLOAT})
    assert message in caught.value.message


def test_nan_and_infinity_are_accepted_as_rapidjson_does() -> None:
    request = _decode(b'{"inputs": [NaN, Infinity, -Infinity]}', {"x": FLOAT})
    assert np.isnan(request.inputs["x"][0]) and request.inputs["x"][2] == -np.inf


def test_named_instances_need_every_input() -> None:
    with pytest.raises(InvalidInput, match="keys must be equal to: a,b"):
        _decode(b'{"instances": [{"a": 1.0}]}', {"a": FLOAT, "b": FLOAT})


def test_examples_become_tf_examples() -> None:
    name, found, context = examples.decode_examples({"examples": [{"x": 2.0, "tag": "a"}]})
    assert name == "" and context is None
    assert list(found[0].features.feature["x"].float_list.value) == [2.0]
    assert encode.encode_regression_results([3.0]) == b'{\n    "results": [3.0]\n}'


def test_error_body_is_valid_json() -> None:
    assert orjson.loads(encode.error_body("Missing 'inputs' \"x\"")) == {"error": "Missing 'inputs' \"x\""}
    assert encode.error_body("x") == b'{\n    "error": "x"\n}'


def test_echoed_request_is_cut_short() -> None:
    body = b'{"instances": [' + b"1.0," * 100000 + b'1.0], "inputs": [1.0]}'
    with pytest.raises(InvalidInput) as caught:
        _decode(body, {"x": FLOAT})
    message = caught.value.message
    assert message.startswith('JSON Value: {\n    "instances": [\n        1.0,')
    assert len(message) < 2200 and "...Not formatted correctly" in message.replace(" Not", "Not")


arrays = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_]).flatmap(
    lambda dtype: hnp.arrays(
        dtype,
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4),
        elements=st.floats(width=16 if dtype == np.float16 else 32 if dtype == np.float32 else 64)
        if np.dtype(dtype).kind == "f"
        else None,
    )
)


@settings(max_examples=300, deadline=None, database=None)
@given(first=arrays, second=arrays, several=st.booleans())
def test_the_slicing_writer_gives_the_value_by_value_writers_bytes(
    first: np.ndarray, second: np.ndarray, several: bool
) -> None:
    outputs = {"b": first, "a": second.reshape((first.shape[0], -1)) if second.size % first.shape[0] == 0 else first}
    if not several:
        outputs = {"y": first}
    names = sorted(outputs)
    assert encode.encode_predict_response(outputs, RequestFormat.ROW) == encode._rows_by_value(
        names, outputs, first.shape[0], several
    )
    assert encode.encode_predict_response(outputs, RequestFormat.COLUMNAR) == encode._columnar_by_value(
        names, outputs, several
    )
    if first.dtype.kind == "f":
        double = first.dtype == np.float64
        expected = [values.format_decimal(float(v), double) for v in first.astype(np.float64).reshape(-1).tolist()]
        assert encode.float_tokens(first) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"instances": [[[0], [12]], [[255], [3]]]}',
        b'{"instances":[1,2,3]}',
        b' {\n "inputs" : [[1.5, -2e3], [0.25, 7]] } ',
        b'{"signature_name": "serving_default", "instances": [[1, 2]]}',
        b'{"instances": [[1, 2]], "signature_name": "other_sig"}',
        b'{"instances": [[16777216, 1]]}',
        b'{"instances": [[1, 2], [3]]}',
        b'{"instances": [[1, 2], [3, 4, 5]]}',
        b'{"instances": [[[1]], [2]]}',
        b'{"instances": [[1,,2]]}',
        b'{"instances": [01, 2]}',
        b'{"instances": [1.5e400]}',
        b'{"instances": []}',
        b'{"instances": [[]]}',
        b'{"instances": [1, 2',
        b'{"signature_name": "a", "instances": [1], "signature_name": "b"}',
        b'{"instances": [-0.0, 0, -0, 0.0, -0e0]}',
        b'{"instances": [16777215, -16777215, 0.5, -16777215.0]}',
        b'{"instances": [16777216.0, 1]}',
        b'{"instances": [-16777216, 1]}',
        b'{"instances": [1e10, 1]}',
        b'{"instances": [1, 2, 3.5e-320]}',
        b'{"instances": [3.4028235e38, 1]}',
        b'{"instances": [3.5e38]}',
        b'{"instances": [9007199254740993]}',
        b'{"instances": [-9223372036854775808]}',
        b'{"instances": [9223372036854775807, 1.5]}',
        b'{"instances": [18446744073709551615]}',
        b'{"instances": [123456789012345678901234567890]}',
        b'{"instances": [[true, 1]]}',
        b'{"instances": [[1, false]]}',
    ],
)
@pytest.mark.parametrize("dtype", [values.DT_FLOAT, values.DT_DOUBLE, values.DT_INT64, values.DT_UINT32])
def test_the_numeric_reader_agrees_with_the_general_decoder(body: bytes, dtype: int) -> None:
    """Same arrays (dtype, shape, values) or, where the general decoder raises, no answer of its own."""
    try:
        expected = _decode(body, {"x": dtype})
    except Exception:
        expected = None
    numeric = decode.NumericBody.read(body)
    fast = numeric.decode({"x": dtype}) if numeric is not None else None
    if expected is None:
        assert fast is None
        return
    if fast is not None:
        assert fast.signature_name == expected.signature_name
        assert fast.request_format is expected.request_format
        assert fast.inputs["x"].dtype == expected.inputs["x"].dtype
        assert fast.inputs["x"].shape == expected.inputs["x"].shape
        assert fast.inputs["x"].tobytes() == expected.inputs["x"].tobytes()  # also tells -0.0 from 0.0
        assert encode.encode_predict_response(fast.inputs, fast.request_format) == encode.encode_predict_response(
            expected.inputs, expected.request_format
        )


def _before_small_floats(numeric: decode.NumericBody, dtype: int) -> np.ndarray | None:
    """What ``NumericBody.decode`` gave before its array.array path: numpy's conversion alone."""
    array = decode._fast_array(numeric.values, dtype, bools=False)
    return None if array is None else array.reshape(numeric.shape)


edge_numbers = st.one_of(
    st.integers(-(2**24) - 2, 2**24 + 2),
    st.sampled_from([0, -(2**24) + 1, 2**24 - 1, 2**24, 2**53 + 1, -(2**63), 2**63 - 1, 2**64 - 1]),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(-(2.0**24), 2.0**24, allow_nan=False),
    st.sampled_from([-0.0, 0.0, 5e-324, -5e-324, 3.4028234663852886e38, 3.5e38, 1.7976931348623157e308]),
)


@settings(max_examples=400, deadline=None, database=None)
@given(
    numbers=st.lists(edge_numbers, min_size=1, max_size=12),
    floats_only=st.booleans(),
    dtype=st.sampled_from([values.DT_FLOAT, values.DT_DOUBLE]),
)
def test_the_array_fast_path_gives_the_same_bytes_as_before(numbers: list[Any], floats_only: bool, dtype: int) -> None:
    """ints and floats of any size, -0.0, subnormals: the array.array path gives byte-identical arrays to
    numpy's conversion it bypasses and to the general decoder, and declines where those refuse."""
    if floats_only:
        numbers = [float(n) for n in numbers]
    body = orjson.dumps({"instances": numbers})
    numeric = decode.NumericBody.read(body)
    assert numeric is not None
    fast = numeric.decode({"x": dtype})
    before = _before_small_floats(numeric, dtype)
    assert (fast is None) == (before is None)
    if fast is not None and before is not None:
        assert fast.inputs["x"].dtype == before.dtype and fast.inputs["x"].tobytes() == before.tobytes()
    test_the_numeric_reader_agrees_with_the_general_decoder(body, dtype)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"instances": [[true, 1]]}',
            "element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: true Type: True",
        ),
        (
            b'{"instances": [1, false]}',
            "element: 1 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: false Type: False",
        ),
    ],
)
def test_bools_never_reach_the_array_path_and_are_refused_as_before(body: bytes, message: str) -> None:
    assert decode.NumericBody.read(body) is None  # the pattern admits no letters
    with pytest.raises(InvalidInput) as raised:
        _decode(body, {"x": FLOAT})
    assert raised.value.message == f"Failed to process {message} is not of expected type: float"


def test_the_numeric_reader_takes_the_usual_image_body() -> None:
    body = orjson.dumps({"instances": np.arange(784).reshape(1, 28, 28, 1).tolist()})
    numeric = decode.NumericBody.read(body)
    assert numeric is not None and numeric.shape == (1, 28, 28, 1)
    parsed = numeric.decode({"image": values.DT_FLOAT})
    assert parsed is not None and parsed.inputs["image"].dtype == np.float32
    np.testing.assert_array_equal(parsed.inputs["image"].reshape(-1), np.arange(784))


numbers = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False, width=64))
nested = st.recursive(st.lists(numbers, max_size=4), lambda inner: st.lists(inner, max_size=3), max_leaves=24)
regular = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=3).flatmap(
    lambda shape: hnp.arrays(np.int64, shape, elements=st.integers(-(2**30), 2**30)).map(lambda a: a.tolist())
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    value=st.one_of(nested, regular),
    key=st.sampled_from(["instances", "inputs"]),
    spaced=st.booleans(),
    dtype=st.sampled_from([values.DT_FLOAT, values.DT_DOUBLE, values.DT_INT64]),
)
def test_the_numeric_reader_agrees_on_any_nesting(value: Any, key: str, spaced: bool, dtype: int) -> None:
    document = {key: value}
    body = json.dumps(document).encode() if spaced else orjson.dumps(document)
    test_the_numeric_reader_agrees_with_the_general_decoder(body, dtype)
