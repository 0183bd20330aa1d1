"""Encoded bytes -> uint8 RGBA in TensorFlow ops, decoding as the gateway's Pillow path does
(``serving.pictures.decode``): PNG (16 bits keep the high byte; grayscale under 8 bits opaque), JPEG
with the accurate integer DCT (Pillow's), GIF (first frame, transparent pixels black), BMP (no
alpha), WebP."""

from __future__ import annotations

import tensorflow as tf

from serving.pictures import spec
from training.pictures.exif import find

_FORMATS = ("png", "jpeg", "gif", "bmp", "webp")
_TOO_LARGE = f"image_bytes: the image is over {spec.MAX_PIXELS} pixels"


def _bytes(text: tf.Tensor, start: int, size: int) -> tf.Tensor:
    """int64 values of text[start:start + size], zeros past the end."""
    padded = tf.strings.join([tf.strings.substr(text, 0, start + size), tf.constant(b"\0" * (start + size))])
    return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, start, size), tf.uint8), tf.int64)


def _format(encoded: tf.Tensor) -> tf.Tensor:
    head = _bytes(encoded, 0, 12)

    def starts(magic: bytes, at: int = 0) -> tf.Tensor:
        return tf.reduce_all(tf.equal(head[at : at + len(magic)], list(magic)))

    found = tf.stack(
        [
            starts(b"\x89PNG\r\n\x1a\n"),
            starts(b"\xff\xd8\xff"),
            tf.logical_or(starts(b"GIF87a"), starts(b"GIF89a")),
            starts(b"BM"),
            tf.logical_and(starts(b"RIFF"), starts(b"WEBP", 8)),
            tf.constant(True),
        ]
    )
    return tf.cast(tf.argmax(tf.cast(found, tf.int32)), tf.int32)


def _declared_pixels(encoded: tf.Tensor, kind: tf.Tensor) -> tf.Tensor:
    """Width x height from the header, before decoding (0 where the format keeps it elsewhere)."""
    head = _bytes(encoded, 0, 26)

    def big(at: int, size: int) -> tf.Tensor:
        return tf.reduce_sum(head[at : at + size] * [256**i for i in reversed(range(size))])

    def little(at: int, size: int) -> tf.Tensor:
        return tf.reduce_sum(head[at : at + size] * [256**i for i in range(size)])

    def bmp_height() -> tf.Tensor:
        value = little(22, 4)
        return tf.where(value >= 2**31, 2**32 - value, value)

    return tf.switch_case(
        kind,
        [
            lambda: big(16, 4) * big(20, 4),
            lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64)),
            lambda: little(6, 2) * little(8, 2),
            lambda: little(18, 4) * bmp_height(),
            lambda: tf.constant(0, tf.int64),
            lambda: tf.constant(0, tf.int64),
        ],
    )


def _opaque(rgb: tf.Tensor) -> tf.Tensor:
    return tf.concat([rgb, tf.fill(tf.concat([tf.shape(rgb)[:2], [1]], 0), tf.constant(255, tf.uint8))], axis=2)


def _png_has_alpha(encoded: tf.Tensor) -> tf.Tensor:
    """As ``serving.pictures.decode.png_has_alpha``. Asking for 4 channels only then matters: an
    opaque PNG under 8 bits would get a filler alpha of 1, 3 or 15 instead of 255."""
    header = _bytes(encoded, 24, 2)
    depth, colour_type = header[0], header[1]
    text = tf.strings.substr(encoded, 0, spec.EXIF_WINDOW)
    length = tf.cast(tf.strings.length(text), tf.int64)
    window = tf.cast(tf.io.decode_raw(tf.strings.join([text, tf.constant(b"\0" * 16)]), tf.uint8), tf.int64)
    transparency, pixels = find(window, length, b"tRNS"), find(window, length, b"IDAT")
    chunk = tf.logical_and(transparency >= 0, tf.logical_or(pixels < 0, transparency < pixels))
    low_bit_gray = tf.logical_and(tf.equal(colour_type, 0), depth < 8)
    with_alpha = tf.logical_or(tf.equal(colour_type, 4), tf.equal(colour_type, 6))
    return tf.logical_or(with_alpha, tf.logical_and(chunk, tf.logical_not(low_bit_gray)))


def _png(encoded: tf.Tensor) -> tf.Tensor:
    return tf.cond(
        _png_has_alpha(encoded),
        lambda: tf.io.decode_png(encoded, channels=4),
        lambda: _opaque(tf.io.decode_png(encoded, channels=3)),
    )


def _webp(encoded: tf.Tensor) -> tf.Tensor:
    # The WebP decoder takes only the channel count the file has (3, or 4 with alpha).
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)
    return tf.cond(tf.equal(tf.shape(image)[2], 4), lambda: image, lambda: _opaque(image[..., :3]))


def decode_rgba(encoded: tf.Tensor) -> tf.Tensor:
    """One encoded picture -> uint8 [h, w, 4]; a clear InvalidArgument for anything else."""
    kind = _format(encoded)
    # An empty picture fails both checks; the second waits for the first so that the error always
    # names the real cause (independent assertions run in whichever order the executor picks).
    not_empty = tf.debugging.assert_positive(
        tf.strings.length(encoded), message="image_bytes: the image is empty (0 bytes)"
    )
    with tf.control_dependencies([not_empty]):
        known = tf.debugging.assert_less(
            kind, len(_FORMATS), message="image_bytes: the image could not be decoded: send PNG or JPEG bytes"
        )
    with tf.control_dependencies([not_empty, known]):
        declared = _declared_pixels(encoded, kind)
    size_check = tf.debugging.assert_less_equal(
        declared,
        tf.constant(spec.MAX_PIXELS, tf.int64),
        message=_TOO_LARGE,
    )
    with tf.control_dependencies([size_check]):
        rgba = tf.switch_case(
            kind,
            [
                lambda: _png(encoded),
                lambda: _opaque(tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")),
                lambda: _opaque(tf.io.decode_gif(encoded)[0]),
                lambda: _opaque(tf.io.decode_bmp(encoded, channels=3)),
                lambda: _webp(encoded),
                lambda: tf.zeros([1, 1, 4], tf.uint8),
            ],
        )
    rgba = tf.ensure_shape(rgba, [None, None, 4])
    pixels = tf.cast(tf.shape(rgba)[0], tf.int64) * tf.cast(tf.shape(rgba)[1], tf.int64)
    with tf.control_dependencies(
        [
            tf.debugging.assert_less_equal(
                pixels,
                tf.constant(spec.MAX_PIXELS, tf.int64),
                message=_TOO_LARGE,
            )
        ]
    ):
        return tf.identity(rgba)
