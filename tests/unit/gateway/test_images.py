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


def test_colour_alpha_and_size_are_converted_and_reported() -> None:
    rgba = Image.new("RGBA", (56, 56), (255, 255, 255, 255))
    array, conversion = images.from_bytes(_encoded(rgba), LIMIT)
    assert conversion.steps == ["alpha composited on black", "grayscale from RGBA", "resized 56x56 to 28x28"]
    assert float(array.min()) == 255.0


def test_base64_and_data_urls() -> None:
    png = _encoded(Image.new("L", (28, 28), 7))
    for text in (base64.b64encode(png).decode(), "data:image/png;base64," + base64.b64encode(png).decode()):
        array, _ = images.from_base64(text, LIMIT)
        assert float(array.mean()) == 7.0
    with pytest.raises(InvalidInput, match="Unable to base64 decode the image"):
        images.from_base64("***", LIMIT)


def test_pixel_arrays() -> None:
    flat, conversion = images.from_pixels([i % 256 for i in range(784)], 10**6)
    assert flat.shape == (28, 28, 1) and flat[0, 1, 0] == 1.0 and conversion.steps == []
    small, conversion = images.from_pixels([[255] * 14] * 14, 10**6)
    assert conversion.steps == ["resized 14x14 to 28x28"] and float(small.min()) == 255.0
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
