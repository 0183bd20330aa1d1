"""Picture preparation in TensorFlow ops: the steps of ``serving.pictures.prepare`` (docs/pictures.md)
on one decoded picture, integer arithmetic up to the area filter as in numpy."""

from __future__ import annotations

import tensorflow as tf

from serving.pictures import spec
from training.pictures.decode import decode_rgba
from training.pictures.exif import orientation as exif_orientation

_F64 = tf.float64


def luma_and_alpha(rgba: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    pixels = tf.cast(rgba, tf.int32)
    total = (
        spec.LUMA_RED * pixels[..., 0]
        + spec.LUMA_GREEN * pixels[..., 1]
        + spec.LUMA_BLUE * pixels[..., 2]
        + (1 << (spec.LUMA_SHIFT - 1))
    )
    return tf.bitwise.right_shift(total, spec.LUMA_SHIFT), pixels[..., 3]


def _ring(plane: tf.Tensor) -> tf.Tensor:
    return tf.concat([plane[0, :], plane[-1, :], plane[1:-1, 0], plane[1:-1, -1]], axis=0)


def _lower_median(values: tf.Tensor) -> tf.Tensor:
    return tf.sort(values)[(tf.size(values) - 1) // 2]


def composite(y: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """As ``serving.pictures.prepare.composite`` (exact when opaque: then y is returned)."""
    ring_alpha = _ring(alpha)
    weight = tf.cast(alpha, tf.int64)
    light_object = tf.reduce_sum(tf.cast(y, tf.int64) * weight) >= spec.LIGHT_OBJECT * tf.reduce_sum(weight)
    opaque_ring = tf.boolean_mask(_ring(y), ring_alpha >= spec.OPAQUE)
    on_black = tf.cond(
        _lower_median(ring_alpha) < spec.OPAQUE,
        lambda: light_object,
        lambda: _lower_median(opaque_ring) < spec.LIGHT_BACKGROUND,
    )
    colour = tf.where(on_black, 0, 255)
    return (y * alpha + colour * (255 - alpha) + 127) // 255


def orient(y: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    flipped = tf.transpose(y)
    return tf.switch_case(
        tf.clip_by_value(orientation - 1, 0, 7),
        [
            lambda: y,
            lambda: tf.reverse(y, [1]),
            lambda: tf.reverse(y, [0, 1]),
            lambda: tf.reverse(y, [0]),
            lambda: flipped,
            lambda: tf.reverse(flipped, [1]),
            lambda: tf.reverse(flipped, [0, 1]),
            lambda: tf.reverse(flipped, [0]),
        ],
    )


def background_level(y: tf.Tensor) -> tf.Tensor:
    return _lower_median(_ring(y))


def area_weights(size_in: tf.Tensor, size_out: tf.Tensor) -> tf.Tensor:
    step = tf.cast(size_in, _F64) / tf.cast(size_out, _F64)
    low = tf.range(size_out, dtype=_F64)[:, None] * step
    high = (tf.range(size_out, dtype=_F64)[:, None] + 1.0) * step
    source = tf.range(size_in, dtype=_F64)[None, :]
    overlap = tf.minimum(high, source + 1.0) - tf.maximum(low, source)
    return tf.maximum(overlap, 0.0) / step


def _span(inside: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    first = tf.cast(tf.argmax(tf.cast(inside, tf.int32)), tf.int32)
    last = tf.size(inside) - 1 - tf.cast(tf.argmax(tf.cast(tf.reverse(inside, [0]), tf.int32)), tf.int32)
    return first, last


def _fitted(size: tf.Tensor, longest: tf.Tensor) -> tf.Tensor:
    return tf.maximum(1, (2 * spec.FIT * size + longest) // (2 * longest))


def _trim_and_fit(y: tf.Tensor, background: tf.Tensor) -> tf.Tensor:
    height, width = tf.shape(y)[0], tf.shape(y)[1]
    one_colour = tf.debugging.assert_greater(
        tf.reduce_max(y), tf.reduce_min(y), message="image_bytes: the picture is all one colour: nothing to classify"
    )
    light = background >= spec.LIGHT_BACKGROUND
    y = tf.where(light, 255 - y, y)
    background = tf.where(light, 255 - background, background)
    lighter = tf.cast((y - background) > spec.TOLERANCE, tf.int32)
    needed = spec.MIN_RUN * tf.maximum(1, tf.minimum(height, width) // spec.MIN_RUN_PER)
    rows, columns = tf.reduce_sum(lighter, axis=1) >= needed, tf.reduce_sum(lighter, axis=0) >= needed
    no_object = tf.debugging.assert_equal(
        tf.logical_and(tf.reduce_any(rows), tf.reduce_any(columns)),
        True,
        message=f"image_bytes: no object stands out from the background (tolerance {spec.TOLERANCE})",
    )
    with tf.control_dependencies([one_colour, no_object]):
        (top, bottom), (left, right) = _span(rows), _span(columns)
    box_height, box_width = bottom - top + 1, right - left + 1
    crop = tf.maximum(y[top : bottom + 1, left : right + 1] - (background + spec.BLACK_POINT), 0)
    scale = tf.constant(255.0, tf.float32) / tf.cast(255 - background - spec.BLACK_POINT, tf.float32)
    levelled = tf.cast(tf.cast(crop, tf.float32) * scale, _F64)
    longest = tf.maximum(box_height, box_width)
    out_height, out_width = _fitted(box_height, longest), _fitted(box_width, longest)
    small = tf.matmul(
        tf.matmul(area_weights(box_height, out_height), levelled), area_weights(box_width, out_width), transpose_b=True
    )
    pad_top, pad_left = (spec.SIDE - out_height) // 2, (spec.SIDE - out_width) // 2
    canvas = tf.pad(small, [[pad_top, spec.SIDE - out_height - pad_top], [pad_left, spec.SIDE - out_width - pad_left]])
    return tf.cast(tf.clip_by_value(tf.round(canvas), 0.0, 255.0), tf.float32)


def prepare_picture(encoded: tf.Tensor) -> tf.Tensor:
    """One encoded picture (scalar string) -> float32 [28, 28, 1], raw intensities 0..255."""
    rgba = decode_rgba(encoded)
    # The orientation is read from the bytes only once they decoded: on a bad picture (empty, say) its
    # own ops could otherwise fail first, with an error that does not name the cause.
    with tf.control_dependencies([rgba]):
        orientation = exif_orientation(encoded)
    y, alpha = luma_and_alpha(rgba)
    y = orient(composite(y, alpha), orientation)
    background = background_level(y)
    shape = tf.shape(y)
    dataset_style = tf.logical_and(
        tf.reduce_all(tf.equal(shape, [spec.SIDE, spec.SIDE])), background < spec.LIGHT_BACKGROUND
    )
    prepared = tf.cond(dataset_style, lambda: tf.cast(y, tf.float32), lambda: _trim_and_fit(y, background))
    return tf.reshape(prepared, [spec.SIDE, spec.SIDE, 1])
