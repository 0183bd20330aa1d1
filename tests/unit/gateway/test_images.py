from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from serving.errors import InvalidInput, PayloadTooLarge
from serving.gateway import images

LIMIT = 4096 * 4096


def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_a_28x28_grayscale_png_is_used_as_sent() -> None:
    pixels = np.arange(784, dtype=np.uint8).reshape(28, 28)
    array, conversion = images.from_bytes(_encoded(Image.fromarray(pixels)), LIMIT)
    assert array.shape == (28, 28, 1) and array.dtype == np.float32
    np.testing.assert_array_equal(array[..., 0], pixels)
    assert conversion.steps == []


def test_a_photo_is_prepared_and_the_steps_reported() -> None:
    """A dark object on a transparent-edged white RGBA: composited, grey, inverted, trimmed, fitted."""
    rgba = np.full((60, 80, 4), 255, np.uint8)
    rgba[10:50, 30:50, :3] = (40, 20, 90)
    rgba[:, :3, 3] = 0  # a transparent strip at the left edge
    array, conversion = images.from_bytes(_encoded(Image.fromarray(rgba, "RGBA")), LIMIT)
    assert conversion.steps == [
        "grayscale from RGBA",
        "alpha composited on white",
        "light background (255) inverted",
        "cropped to the object: 20x40 at (30, 10)",
        "scaled to 14x28",
        "padded to 28x28 (left 7, top 0, right 7, bottom 0)",
    ]
    assert conversion.report()["prepared"] == {
        "orientation": 1,
        "alpha_background": "white",
        "background": 255,
        "inverted": True,
        "dataset_style": False,
        "box": [30, 10, 20, 40],
        "scaled_to": [14, 28],
        "padded": [7, 0, 7, 0],
    }
    assert array[:, 7:21].min() > 200 and array[:, :7].max() == array[:, 21:].max() == 0


def test_the_model_input_as_a_png_data_url() -> None:
    pixels = np.arange(784, dtype=np.float32).reshape(28, 28, 1) % 256
    url = images.png_data_url(pixels)
    assert url.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))))
    np.testing.assert_array_equal(decoded, pixels[..., 0])


def test_base64_and_data_urls() -> None:
    png = _encoded(Image.new("L", (28, 28), 7))
    for text in (base64.b64encode(png).decode(), "data:image/png;base64," + base64.b64encode(png).decode()):
        array, _ = images.from_base64(text, LIMIT)
        assert float(array.mean()) == 7.0
    with pytest.raises(InvalidInput, match="Unable to base64 decode the image"):
        images.from_base64("***", LIMIT)


def test_pixel_arrays() -> None:
    flat, conversion = images.from_pixels([i % 256 * 0.5 for i in range(784)], 10**6)
    assert flat.shape == (28, 28, 1) and flat[0, 1, 0] == 0.5 and conversion.steps == []  # as sent, unrounded
    assert conversion.prepared is not None and conversion.prepared.dataset_style
    light = [[255] * 28] * 28
    light[5] = [0] * 28  # a dark line on white: a photo, not a dataset image, whatever its size
    line, conversion = images.from_pixels(light, 10**6)
    assert conversion.prepared is not None and conversion.prepared.inverted and conversion.prepared.box == (0, 5, 28, 1)
    assert conversion.steps[-2:] == ["scaled to 28x1", "padded to 28x28 (left 0, top 13, right 0, bottom 14)"]
    assert float(line[13].min()) == 255.0 and float(line.sum()) == 255.0 * 28
    _, conversion = images.from_pixels([[[0, 0, 200]] * 3 + [[250, 250, 250]] * 7] * 10, 10**6)
    assert conversion.steps[:2] == ["grayscale from RGB", "light background (250) inverted"]
    with pytest.raises(InvalidInput, match="all one colour"):
        images.from_pixels([[255] * 14] * 14, 10**6)
    with pytest.raises(InvalidInput, match="from 0 to 255"):
        images.from_pixels([[-1] * 28] * 28, 10**6)
    with pytest.raises(InvalidInput, match="regular nested list"):
        images.from_pixels([[1, 2], [3]], 10**6)


def test_image_limits() -> None:
    with pytest.raises(PayloadTooLarge, match="Image of 101x100 pixels is over the limit of 10000 pixels"):
        images.from_bytes(_encoded(Image.new("L", (101, 100))), 10_000)
    with pytest.raises(PayloadTooLarge):
        images.from_pixels([[0] * 200] * 200, 10_000)
    with pytest.raises(InvalidInput, match="could not be decoded"):
        images.from_bytes(b"GIF89a-not-really", LIMIT)


def _png_chunks(data: bytes) -> dict[bytes, bytes]:
    chunks, position = {}, 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        chunks[data[position + 4 : position + 8]] = data[position + 8 : position + 8 + length]
        position += 12 + length
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_a_png_broken_after_its_first_image_chunk_is_an_input_error() -> None:
    """Pillow opens it, then raises SyntaxError ("broken PNG file") while loading the pixels: that
    was a 500 from /v1/classify (found by the reliability run's decoder property tests)."""
    buffer = io.BytesIO()
    Image.fromarray(np.arange(784, dtype=np.uint8).reshape(28, 28)).save(buffer, "PNG")
    png = buffer.getvalue()
    chunks = _png_chunks(png)
    pixels = chunks[b"IDAT"]
    half = len(pixels) // 2
    broken = (
        png[:8]
        + _chunk(b"IHDR", chunks[b"IHDR"])
        + _chunk(b"IDAT", pixels[:half])
        + _chunk(b"\x0b\x98\xf0K", pixels[half:])  # not a chunk type: Pillow raises SyntaxError
        + _chunk(b"IEND", b"")
    )
    with pytest.raises(InvalidInput, match="could not be decoded"):
        images.from_bytes(broken, 4096 * 4096)
    intact = png[:8] + _chunk(b"IHDR", chunks[b"IHDR"]) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")
    decoded, _ = images.from_bytes(intact, 4096 * 4096)  # the same construction, unbroken, decodes
    assert decoded.reshape(-1).tolist() == list(range(256)) * 3 + list(range(16))
