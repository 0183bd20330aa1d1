"""EXIF orientation from the raw bytes in TensorFlow ops, by the rule of ``serving.pictures.exif``:
the first "Exif\\0\\0" (JPEG) or "eXIf" (PNG) marker in the first ``EXIF_WINDOW`` bytes, a TIFF
header after it, tag 0x0112 (SHORT, 1..8) among IFD0's first ``EXIF_MAX_ENTRIES`` entries; else 1."""

from __future__ import annotations

import tensorflow as tf

from serving.pictures import spec

_PAD = 16


def find(window: tf.Tensor, length: tf.Tensor, marker: bytes) -> tf.Tensor:
    """Index of the first whole ``marker`` in window[:length], or -1."""
    count = tf.maximum(length - len(marker) + 1, 0)
    hits = tf.ones([count], tf.bool)
    for offset, value in enumerate(marker):
        hits = tf.logical_and(hits, tf.equal(window[offset : offset + count], value))
    first = tf.cast(tf.argmax(tf.cast(hits, tf.int32)), tf.int64)
    return tf.where(tf.reduce_any(hits), first, tf.constant(-1, tf.int64))


def orientation(encoded: tf.Tensor) -> tf.Tensor:
    """int32 scalar 1..8."""
    text = tf.strings.substr(encoded, 0, spec.EXIF_WINDOW)
    length = tf.cast(tf.strings.length(text), tf.int64)
    window = tf.cast(tf.io.decode_raw(tf.strings.join([text, tf.constant(b"\0" * _PAD)]), tf.uint8), tf.int64)
    last = tf.shape(window, out_type=tf.int64)[0] - 1
    is_jpeg = tf.reduce_all(tf.equal(window[:3], [0xFF, 0xD8, 0xFF]))
    is_png = tf.reduce_all(tf.equal(window[:8], list(b"\x89PNG\r\n\x1a\n")))
    jpeg_at, png_at = find(window, length, b"Exif\0\0"), find(window, length, b"eXIf")
    tiff = tf.where(is_jpeg, jpeg_at + 6, png_at + 4)
    found = tf.logical_or(tf.logical_and(is_jpeg, jpeg_at >= 0), tf.logical_and(is_png, png_at >= 0))
    found = tf.logical_and(found, tiff + 8 <= length)

    def byte(position: tf.Tensor) -> tf.Tensor:
        return tf.gather(window, tf.clip_by_value(position, 0, last))

    little = tf.logical_and(tf.equal(byte(tiff), 0x49), tf.equal(byte(tiff + 1), 0x49))
    big = tf.logical_and(tf.equal(byte(tiff), 0x4D), tf.equal(byte(tiff + 1), 0x4D))

    def number(position: tf.Tensor, size: int) -> tf.Tensor:
        parts = [byte(position + index) for index in range(size)]
        value_little = sum(part * 256**index for index, part in enumerate(parts))
        value_big = sum(part * 256**index for index, part in enumerate(reversed(parts)))
        return tf.where(little, value_little, value_big)

    found = tf.logical_and(found, tf.logical_or(little, big))
    found = tf.logical_and(found, tf.equal(number(tiff + 2, 2), 42))
    directory = tiff + number(tiff + 4, 4)
    found = tf.logical_and(found, directory + 2 <= length)
    count = tf.minimum(number(directory, 2), spec.EXIF_MAX_ENTRIES)
    index = tf.range(spec.EXIF_MAX_ENTRIES, dtype=tf.int64)
    entries = directory + 2 + 12 * index
    valid = tf.logical_and(index < count, entries + 10 <= length)
    match = tf.logical_and(valid, tf.equal(number(entries, 2), spec.EXIF_ORIENTATION_TAG))
    entry = tf.gather(entries, tf.argmax(tf.cast(match, tf.int32)))
    value = number(entry + 8, 2)
    usable = tf.logical_and(tf.equal(number(entry + 2, 2), 3), tf.logical_and(value >= 1, value <= 8))
    found = tf.logical_and(found, tf.logical_and(tf.reduce_any(match), usable))
    return tf.cast(tf.where(found, value, 1), tf.int32)
