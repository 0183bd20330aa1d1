"""serving.pictures: EXIF orientation against Pillow's reading, and decoding of every colour mode."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageOps

from serving.errors import InvalidInput, PayloadTooLarge
from serving.pictures import decode, exif
from serving.pictures.prepare import luma, orient

LIMIT = 4096 * 4096
RNG = np.random.default_rng(18)
PIXELS = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _with_orientation(value: int, fmt: str) -> bytes:
    tags = Image.Exif()
    tags[0x010F] = "tensorgate"  # another tag first, as cameras write them
    tags[0x0112] = value
    return _encoded(Image.fromarray(PIXELS), fmt, exif=tags.tobytes())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("value", range(1, 9))
def test_orientation_is_read_as_pillow_reads_it(fmt: str, value: int) -> None:
    data = _with_orientation(value, fmt)
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == value
    assert exif.orientation(data) == value


def _jpeg_with_tiff(tiff: bytes) -> bytes:
    plain = _encoded(Image.fromarray(PIXELS), "JPEG")
    payload = b"Exif\0\0" + tiff
    return plain[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + plain[2:]


def _tiff(order: str, entries: list[tuple[int, int, int, int]]) -> bytes:
    mark = b"II" if order == "<" else b"MM"
    body = struct.pack(order + "HI", 42, 8) + struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack(order + "HHIHH", tag, kind, count, value, 0)
    return mark + body + b"\0\0\0\0"


def test_big_endian_and_rejected_values() -> None:
    assert exif.orientation(_jpeg_with_tiff(_tiff(">", [(0x0100, 3, 1, 5), (0x0112, 3, 1, 6)]))) == 6
    assert exif.orientation(_jpeg_with_tiff(_tiff("<", [(0x0112, 3, 1, 8)]))) == 8
    assert exif.orientation(_jpeg_with_tiff(_tiff("<", [(0x0112, 3, 1, 9)]))) == 1  # out of range
    assert exif.orientation(_jpeg_with_tiff(_tiff("<", [(0x0112, 4, 1, 6)]))) == 1  # LONG, not SHORT
    assert exif.orientation(_jpeg_with_tiff(b"XX" + _tiff("<", [(0x0112, 3, 1, 6)])[2:])) == 1  # no byte order
    whole = _jpeg_with_tiff(_tiff("<", [(0x0112, 3, 1, 6)]))
    entry_end = whole.find(b"Exif\0\0") + 6 + 10 + 10  # TIFF header and count, then tag, type, count, value
    assert exif.orientation(whole[:entry_end]) == 6
    assert exif.orientation(whole[: entry_end - 1]) == 1  # the value cut off
    assert exif.orientation(_encoded(Image.fromarray(PIXELS), "JPEG")) == 1
    assert exif.orientation(b"") == exif.orientation(b"Exif\0\0II*\0") == 1  # not a JPEG or PNG


@pytest.mark.parametrize("value", range(1, 9))
def test_orient_turns_pixels_as_pillow_exif_transpose(value: int) -> None:
    stored = Image.open(io.BytesIO(_with_orientation(value, "PNG")))
    shown = np.asarray(ImageOps.exif_transpose(stored).convert("L"), dtype=np.int32)
    np.testing.assert_array_equal(orient(np.asarray(stored.convert("L"), dtype=np.int32), value), shown)


def test_luma_is_pillows_grayscale_exactly() -> None:
    colours = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(colours).convert("L"), dtype=np.int32)
    np.testing.assert_array_equal(luma(colours[..., 0], colours[..., 1], colours[..., 2]), expected)
    with_alpha = np.dstack([colours, RNG.integers(0, 256, (64, 64), dtype=np.uint8)])
    np.testing.assert_array_equal(np.asarray(Image.fromarray(with_alpha, "RGBA").convert("L")), expected)


def test_palette_transparency_and_grayscale_alpha() -> None:
    palette = Image.fromarray(PIXELS).quantize(8)
    planes = decode(_encoded(palette, "PNG", transparency=0), LIMIT)
    rgba = np.asarray(palette.convert("RGBA"))
    assert planes.alpha is not None and (planes.alpha == 0).sum() == (np.asarray(palette) == 0).sum()
    np.testing.assert_array_equal(planes.y, luma(rgba[..., 0], rgba[..., 1], rgba[..., 2]))
    gray_alpha = Image.fromarray(np.stack([PIXELS[..., 0], PIXELS[..., 1]], axis=-1), "LA")
    planes = decode(_encoded(gray_alpha, "PNG"), LIMIT)
    np.testing.assert_array_equal(planes.y, PIXELS[..., 0])
    np.testing.assert_array_equal(planes.alpha, PIXELS[..., 1])


def test_sixteen_bit_keeps_the_high_byte() -> None:
    deep = RNG.integers(0, 65536, (6, 9), dtype=np.uint16)
    planes = decode(_encoded(Image.fromarray(deep), "PNG"), LIMIT)
    assert planes.mode == "I;16" and planes.alpha is None
    np.testing.assert_array_equal(planes.y, deep >> 8)


def test_cmyk_is_converted_as_tensorflow_does() -> None:
    inks = RNG.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    planes = decode(_encoded(Image.fromarray(inks, "CMYK"), "TIFF"), LIMIT)  # lossless, so the inks survive
    channels = [(255 - inks[..., c].astype(np.int32)) * (255 - inks[..., 3].astype(np.int32)) // 255 for c in range(3)]
    np.testing.assert_array_equal(planes.y, luma(*channels))


def test_gif_transparency_is_black_and_bmp_has_no_alpha() -> None:
    palette = Image.fromarray(PIXELS).quantize(8)
    planes = decode(_encoded(palette, "GIF", transparency=0), LIMIT)
    assert planes.alpha is None and (planes.y[np.asarray(palette) == 0] == 0).all()
    rgba = np.concatenate([PIXELS, np.full((5, 7, 1), 7, np.uint8)], axis=-1)
    assert decode(_encoded(Image.fromarray(rgba, "RGBA"), "BMP"), LIMIT).alpha is None


def test_bad_bytes_are_input_errors() -> None:
    with pytest.raises(InvalidInput, match=r"^The image is empty \(0 bytes\)"):
        decode(b"", LIMIT)
    with pytest.raises(InvalidInput, match=r"^The image could not be decoded: send PNG or JPEG bytes$"):
        decode(b"\x89PNG\r\n\x1a\nnot really", LIMIT)
    with pytest.raises(PayloadTooLarge, match=r"^Image of 101x100 pixels is over the limit of 10000 pixels$"):
        decode(_encoded(Image.new("L", (101, 100)), "PNG"), 10_000)
