"""Property tests for every decoder of caller input: for any input, a valid tensor or the project's input error.

TF Serving's JSON bodies (``serving.tfserving``: row ``instances``, columnar ``inputs``, ``{"b64": ...}``)
and the gateway's images (``serving.gateway.images``: PNG/JPEG bytes, base64 and data URLs, pixel
arrays). Inputs are random JSON-ish values, random bytes, and valid bodies or images that are truncated
or mutated. "The project's input error" is ``InvalidInput`` (400) or ``PayloadTooLarge`` (413), and for
JSON conversions TF Serving itself does not implement (half), ``Unimplemented``; anything else escaping
a decoder is a bug (it would be a 500). ``DECODER_EXAMPLES`` sets the examples per test (the reliability
fuzz check raises it).
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from serving.errors import InvalidInput, PayloadTooLarge, Unimplemented
from serving.gateway import images
from serving.tensors import from_numpy, to_numpy
from serving.tfserving import decode, values

EXAMPLES = int(os.environ.get("DECODER_EXAMPLES", "60"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=False
)
INPUT_ERRORS = (InvalidInput, PayloadTooLarge)
MAX_PIXELS = 4096 * 4096
DTYPES = {
    "float": values.DT_FLOAT,
    "double": values.DT_DOUBLE,
    "int64": values.DT_INT64,
    "bool": values.DT_BOOL,
    "string": values.DT_STRING,
    "half": values.DT_HALF,
    "uint64": values.DT_UINT64,
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.builds(lambda raw: {"b64": base64.b64encode(raw).decode()}, st.binary(max_size=12)),
    st.builds(lambda text: {"b64": text}, st.text(max_size=8)),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(["x", "y", "b64", "a"]), inner, max_size=3)
    ),
    max_leaves=30,
)
# regular nested lists, the shape a real tensor has, so decoding gets past the shape checks
regular_lists = st.integers(min_value=1, max_value=3).flatmap(
    lambda rank: st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-300, 300), st.booleans()),
        min_size=1,
        max_size=4,
    ).map(lambda row: [row] * rank)
)
input_maps = st.one_of(
    st.sampled_from(list(DTYPES.values())).map(lambda dtype: {"x": dtype}),
    st.tuples(st.sampled_from(list(DTYPES.values())), st.sampled_from(list(DTYPES.values()))).map(
        lambda pair: {"x": pair[0], "y": pair[1]}
    ),
)


def _check_tensors(parsed: decode.PredictJson, dtypes: dict[str, int]) -> None:
    assert set(parsed.inputs) <= set(dtypes)
    batches = set()
    for name, array in parsed.inputs.items():
        assert isinstance(array, np.ndarray)
        tensor = from_numpy(array)  # what the gateway sends upstream: must encode
        assert tensor.dtype == dtypes[name] or dtypes[name] in (values.DT_UINT64,)
        assert to_numpy(tensor).shape == array.shape
        if array.ndim:
            batches.add(array.shape[0])
    if parsed.request_format is decode.RequestFormat.ROW:
        assert len(batches) <= 1, f"row format with batch sizes {batches}"


def _decode(document: Any, dtypes: dict[str, int]) -> None:
    body = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY) if not isinstance(document, bytes) else document
    try:
        parsed = decode.decode_predict_request(decode.parse_json_object(body), dtypes)
    except INPUT_ERRORS:
        return
    except Unimplemented:
        assert values.DT_HALF in dtypes.values() or values.DT_UINT64 in dtypes.values()
        return
    _check_tensors(parsed, dtypes)


@SETTINGS
@given(body=st.binary(max_size=200))
def test_parse_json_object_of_any_bytes(body: bytes) -> None:
    try:
        document = decode.parse_json_object(body)
    except InvalidInput:
        return
    assert isinstance(document, dict)


@SETTINGS
@given(
    key=st.sampled_from(["instances", "inputs"]),
    value=st.one_of(json_values, regular_lists),
    signature=st.one_of(st.none(), json_values),
    dtypes=input_maps,
)
def test_predict_bodies_of_any_json(key: str, value: Any, signature: Any, dtypes: dict[str, int]) -> None:
    document: dict[str, Any] = {key: value}
    if signature is not None:
        document["signature_name"] = signature
    try:
        _decode(document, dtypes)
    except (OverflowError, ValueError, TypeError) as error:  # orjson refusing an int over 64 bits
        if "Integer exceeds 64-bit range" not in str(error):
            raise


@SETTINGS
@given(
    dtypes=input_maps,
    rows=st.integers(1, 3),
    b64=st.binary(max_size=16),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=4)), max_size=4),
)
def test_mutated_valid_bodies(
    dtypes: dict[str, int], rows: int, b64: bytes, cuts: list[tuple[int, int, bytes]]
) -> None:
    row = {"x": [[0.5, 1.0], [2.0, 3.0]], "y": {"b64": base64.b64encode(b64).decode()}}
    for document in ({"instances": [row] * rows}, {"inputs": {name: [row[name]] * rows for name in row}}):
        body = bytearray(orjson.dumps(document))
        for at, length, insert in cuts:
            at %= len(body) + 1
            body[at : at + length] = insert
        _decode(bytes(body), dtypes)


def _image_bytes(kind: str, width: int, height: int, mode: str) -> bytes:
    image = Image.new(mode, (width, height), color=(90,) * len(mode) if mode != "P" else 3)
    out = io.BytesIO()
    image.save(out, format=kind)
    return out.getvalue()


encoded_images = st.builds(
    _image_bytes,
    st.sampled_from(["PNG", "JPEG", "GIF", "BMP"]),
    st.integers(1, 64),
    st.integers(1, 64),
    st.sampled_from(["L", "RGB"]),
) | st.builds(
    _image_bytes, st.just("PNG"), st.integers(1, 40), st.integers(1, 40), st.sampled_from(["RGBA", "LA", "P"])
)


def _valid_image(array: np.ndarray) -> None:
    assert array.dtype == np.float32
    assert array.shape == (images.SIDE, images.SIDE, 1)
    assert np.isfinite(array).all() and array.min() >= 0 and array.max() <= 255


def _image_or_error(decode: Any, *args: Any) -> None:
    try:
        array, conversion = decode(*args)
    except INPUT_ERRORS:
        return
    _valid_image(array)
    assert conversion.width > 0 and conversion.height > 0


@SETTINGS
@given(data=st.binary(max_size=300))
def test_image_bytes_of_any_bytes(data: bytes) -> None:
    _image_or_error(images.from_bytes, data, MAX_PIXELS)


@SETTINGS
@given(
    image=encoded_images,
    keep=st.floats(0, 1),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
)
def test_truncated_and_mutated_images(image: bytes, keep: float, flips: list[tuple[int, int]]) -> None:
    _image_or_error(images.from_bytes, image, MAX_PIXELS)
    cut = image[: int(len(image) * keep)]
    _image_or_error(images.from_bytes, cut, MAX_PIXELS)
    mutated = bytearray(image)
    for at, value in flips:
        mutated[at % len(mutated)] = value
    _image_or_error(images.from_bytes, bytes(mutated), MAX_PIXELS)
    _image_or_error(images.from_bytes, bytes(mutated), 100)  # a small pixel limit: 413, never a crash


@SETTINGS
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode()),
        encoded_images.map(lambda raw: base64.b64encode(raw).decode()),
        encoded_images.map(lambda raw: base64.b64encode(raw[: len(raw) // 2]).decode()),
    ),
    prefix=st.sampled_from(["", "data:image/png;base64,", "data:", "data:,", "data:image/jpeg;base64"]),
)
def test_base64_and_data_urls(text: str, prefix: str) -> None:
    _image_or_error(images.from_base64, prefix + text, MAX_PIXELS)


pixel_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.integers(0, 255),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


@SETTINGS
@given(
    value=st.one_of(
        json_values,
        st.lists(st.integers(0, 255), min_size=784, max_size=784),
        st.tuples(st.integers(1, 30), st.integers(1, 30), st.sampled_from([0, 1, 2, 3, 4, 5]), pixel_values).map(
            lambda t: [[[t[3]] * t[2] if t[2] else t[3]] * t[1]] * t[0]
        ),
        st.lists(st.lists(pixel_values, min_size=1, max_size=6), min_size=1, max_size=6),
    )
)
def test_pixel_arrays_of_any_json(value: Any) -> None:
    _image_or_error(images.from_pixels, value, MAX_PIXELS)
