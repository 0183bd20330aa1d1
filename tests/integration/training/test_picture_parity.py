"""The two implementations of picture preparation agree: the gateway's numpy (``serving.pictures``)
and the ``serving_bytes`` graph's TensorFlow ops (``training.pictures``), pixel for pixel, on
photo-like sets made from real test images and on every colour mode, format and orientation; and
they refuse the same bad pictures."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from loadtest import photosets
from serving.errors import InvalidInput, PayloadTooLarge
from serving.pictures import decode, orientation, prepare, spec
from training.data import load_dataset, subset
from training.pictures import prepare_picture

RNG = np.random.default_rng(18)


@pytest.fixture(scope="module")
def graph() -> Callable[[bytes], np.ndarray]:
    run = tf.function(
        lambda batch: tf.map_fn(prepare_picture, batch, fn_output_signature=tf.TensorSpec([28, 28, 1], tf.float32)),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    return lambda data: run(tf.constant([data])).numpy()[0]


def numpy_version(data: bytes) -> np.ndarray:
    planes = decode(data, spec.MAX_PIXELS)
    return prepare(planes.y, planes.alpha, orientation(data))[0]


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png16(array: np.ndarray, colour_type: int) -> bytes:
    height, width = array.shape[:2]
    rows = b"".join(b"\0" + array[row].astype(">u2").tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def _object(height: int = 90, width: int = 70, channels: int = 3) -> np.ndarray:
    """A dark, textured object on white, off centre."""
    picture = np.full((height, width, channels), 250, np.uint8)
    picture[15:75, 20:55] = RNG.integers(0, 120, (60, 35, channels), dtype=np.uint8)
    return picture


def _cut_out(light: bool) -> Image.Image:
    rgba = np.zeros((64, 48, 4), np.uint8)
    rgba[8:56, 10:40, :3] = RNG.integers(150, 256, (48, 30, 3)) if light else RNG.integers(0, 100, (48, 30, 3))
    rgba[8:56, 10:40, 3] = 255
    rgba[8:10, 10:40, 3] = 100  # a soft edge
    return Image.fromarray(rgba, "RGBA")


def _odd_pictures() -> dict[str, bytes]:
    rgb = Image.fromarray(_object())
    gray = rgb.convert("L")
    holes = np.dstack([_object(), np.full((90, 70), 255, np.uint8)])
    holes[:10, :10, 3] = 0  # a transparent corner on an opaque photo
    inks = np.dstack([_object(channels=3), RNG.integers(0, 60, (90, 70, 1), dtype=np.uint8)])
    small = np.full((28, 28), 240, np.uint8)
    small[4:24, 9:19] = 30
    dark28 = np.zeros((28, 28, 3), np.uint8)
    dark28[2:26, 5:20] = (200, 120, 40)
    deep = (_object(channels=1)[..., 0].astype(np.uint16) * 257 + RNG.integers(0, 257, (90, 70))).astype(np.uint16)
    pictures = {
        "png rgb": _encoded(rgb, "PNG"),
        "png gray": _encoded(gray, "PNG"),
        "png 1-bit": _encoded(gray.point(lambda value: 255 if value > 128 else 0).convert("1"), "PNG"),
        "png palette": _encoded(rgb.quantize(16), "PNG"),
        "png palette + tRNS": _encoded(rgb.quantize(16), "PNG", transparency=0),
        "png gray + tRNS": _encoded(gray, "PNG", transparency=250),
        "png gray + alpha": _encoded(Image.fromarray(np.dstack([np.asarray(gray), np.asarray(gray)]), "LA"), "PNG"),
        "png light cut-out": _encoded(_cut_out(light=True), "PNG"),
        "png dark cut-out": _encoded(_cut_out(light=False), "PNG"),
        "png transparent corner": _encoded(Image.fromarray(holes, "RGBA"), "PNG"),
        "png 16-bit gray": _png16(deep, 0),
        "png 16-bit rgb": _png16(np.dstack([deep, deep // 2, deep]), 2),
        "png 16-bit gray + alpha": _png16(np.dstack([deep, np.full_like(deep, 65535)]), 4),
        "png 28x28 light": _encoded(Image.fromarray(small), "PNG"),
        "png 28x28 dark rgb": _encoded(Image.fromarray(dark28), "PNG"),
        "jpeg rgb q75": _encoded(rgb, "JPEG", quality=75),
        "jpeg 4:4:4": _encoded(rgb, "JPEG", quality=92, subsampling=0),
        "jpeg gray": _encoded(gray, "JPEG", quality=80),
        "jpeg cmyk": _encoded(Image.fromarray(inks, "CMYK"), "JPEG", quality=90),
        "jpeg progressive": _encoded(rgb, "JPEG", quality=85, progressive=True),
        "jpeg large": _encoded(rgb.resize((1400, 1800)), "JPEG", quality=80),
        "gif": _encoded(rgb.quantize(32), "GIF"),
        "gif transparent": _encoded(rgb.quantize(32), "GIF", transparency=0),
        "bmp": _encoded(rgb, "BMP"),
        "bmp 32-bit": _encoded(Image.fromarray(holes, "RGBA"), "BMP"),
        "webp lossy": _encoded(rgb, "WEBP", quality=80),
        "webp lossless alpha": _encoded(_cut_out(light=False), "WEBP", lossless=True),
        "tiny 1x1 on 2x1": _encoded(Image.fromarray(np.array([[0, 255]], np.uint8)), "PNG"),
        "tiny 1x40": _encoded(Image.fromarray(np.r_[np.full(30, 255), np.zeros(10)].astype(np.uint8)[None]), "PNG"),
        "tiny 3x2": _encoded(Image.fromarray(np.array([[255, 0], [255, 255], [0, 255]], np.uint8)), "PNG"),
    }
    for value in range(1, 9):
        tags = Image.Exif()
        tags[0x0112] = value
        pictures[f"jpeg orientation {value}"] = _encoded(rgb, "JPEG", quality=90, exif=tags.tobytes())
        pictures[f"png orientation {value}"] = _encoded(rgb, "PNG", exif=tags.tobytes())
    return pictures


ODD = _odd_pictures()


@pytest.mark.parametrize("name", list(ODD))
def test_every_format_and_mode_is_prepared_identically(graph, name: str) -> None:
    np.testing.assert_array_equal(graph(ODD[name]), numpy_version(ODD[name]), err_msg=name)


def test_photo_sets_from_real_test_images_are_prepared_identically(graph) -> None:
    data = load_dataset()
    images, _ = subset(data.x_test, data.y_test, 40, seed=18)
    for name in ("dataset", *photosets.SETS):
        for index, picture in enumerate(photosets.build(name, images, seed=18)):
            np.testing.assert_array_equal(graph(picture), numpy_version(picture), err_msg=f"{name} #{index}")
            if name == "dataset":  # the dataset's own 28x28 PNGs reach the model unchanged
                np.testing.assert_array_equal(graph(picture)[..., 0], images[index], err_msg=f"dataset #{index}")


def _declaring(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its few bytes do not hold."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


BAD = {
    "empty": (b"", "The image is empty", "the image is empty"),
    "not an image": (b"hello, world", "could not be decoded", "could not be decoded"),
    "truncated png": (ODD["png rgb"][:60], "could not be decoded", "Invalid PNG data"),
    "truncated jpeg": (ODD["jpeg rgb q75"][:-400], "could not be decoded", "Invalid JPEG data"),  # cut in the scan
    "too large": (_declaring(5000, 4000), "over the limit", f"over {spec.MAX_PIXELS} pixels"),
    "one colour": (_encoded(Image.new("RGB", (64, 48), (250, 250, 250)), "PNG"), "all one colour", "all one colour"),
    "faint object": (
        _encoded(Image.fromarray(np.pad(np.full((20, 20), 240, np.uint8), 20, constant_values=255)), "PNG"),
        "No object stands out",
        "no object stands out",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_both_refuse_the_same_bad_pictures(graph, name: str) -> None:
    data, gateway_error, graph_error = BAD[name]
    with pytest.raises((InvalidInput, PayloadTooLarge), match=gateway_error):
        numpy_version(data)
    with pytest.raises(tf.errors.InvalidArgumentError, match=graph_error):
        graph(data)
