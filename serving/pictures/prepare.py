"""Picture preparation in numpy: luminance (+ alpha) and EXIF orientation -> the model's 28x28 input.

The steps, in order (docs/pictures.md; ``training.picture_graph`` does the same in TensorFlow ops):
composite transparency, orient, measure the background, then either pass a dataset-style 28x28
through unchanged or invert a light background, trim the background, level, scale the object's
longest side to ``FIT`` with an area filter, centre it on a black ``SIDE`` square and round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import InvalidInput
from serving.pictures import spec


@dataclass
class Preparation:
    """What was done to one picture (``box`` in the oriented picture's pixels: x, y, width, height)."""

    orientation: int = 1
    alpha_background: str | None = None  # "black" or "white" when transparency was composited
    background: int = 0
    inverted: bool = False
    dataset_style: bool = False
    box: tuple[int, int, int, int] | None = None
    scaled_to: tuple[int, int] | None = None
    padded: tuple[int, int, int, int] | None = None  # left, top, right, bottom
    notes: list[str] = field(default_factory=list)

    def steps(self) -> list[str]:
        steps = list(self.notes)
        if self.alpha_background:
            steps.append(f"alpha composited on {self.alpha_background}")
        if self.orientation != 1:
            steps.append(f"EXIF orientation {self.orientation} applied")
        if self.dataset_style:
            return steps
        if self.inverted:
            steps.append(f"light background ({self.background}) inverted")
        if self.box is not None and self.scaled_to is not None and self.padded is not None:
            x, y, width, height = self.box
            steps.append(f"cropped to the object: {width}x{height} at ({x}, {y})")
            steps.append(f"scaled to {self.scaled_to[0]}x{self.scaled_to[1]}")
            left, top, right, bottom = self.padded
            steps.append(f"padded to {spec.SIDE}x{spec.SIDE} (left {left}, top {top}, right {right}, bottom {bottom})")
        return steps

    def report(self) -> dict[str, Any]:
        return {
            "orientation": self.orientation,
            "alpha_background": self.alpha_background,
            "background": self.background,
            "inverted": self.inverted,
            "dataset_style": self.dataset_style,
            "box": list(self.box) if self.box else None,
            "scaled_to": list(self.scaled_to) if self.scaled_to else None,
            "padded": list(self.padded) if self.padded else None,
        }


def luma(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """uint8 planes -> int32 luminance 0..255 (Pillow's convert("L"), exactly)."""
    total = (
        spec.LUMA_RED * red.astype(np.int32)
        + spec.LUMA_GREEN * green.astype(np.int32)
        + spec.LUMA_BLUE * blue.astype(np.int32)
        + (1 << (spec.LUMA_SHIFT - 1))
    )
    return total >> spec.LUMA_SHIFT


def _ring(plane: np.ndarray) -> np.ndarray:
    return np.concatenate([plane[0, :], plane[-1, :], plane[1:-1, 0], plane[1:-1, -1]])


def _lower_median(values: np.ndarray) -> int:
    return int(np.sort(values)[(values.size - 1) // 2])


def composite(y: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, str]:
    ring_alpha = _ring(alpha)
    if _lower_median(ring_alpha) < spec.OPAQUE:  # a transparent background: the opaque pixels are the object
        weight = alpha.astype(np.int64)
        on_black = int((y.astype(np.int64) * weight).sum()) >= spec.LIGHT_OBJECT * int(weight.sum())
    else:  # transparent holes show the picture's own background
        on_black = _lower_median(_ring(y)[ring_alpha >= spec.OPAQUE]) < spec.LIGHT_BACKGROUND
    colour = 0 if on_black else 255
    blended = (y.astype(np.int32) * alpha + colour * (255 - alpha.astype(np.int32)) + 127) // 255
    return blended, "black" if on_black else "white"


def orient(y: np.ndarray, orientation: int) -> np.ndarray:
    """Turn the stored pixels the way EXIF says they are shown (Pillow's ImageOps.exif_transpose)."""
    if orientation == 2:
        return y[:, ::-1]
    if orientation == 3:
        return y[::-1, ::-1]
    if orientation == 4:
        return y[::-1, :]
    if orientation == 5:
        return y.T
    if orientation == 6:
        return y.T[:, ::-1]
    if orientation == 7:
        return y.T[::-1, ::-1]
    if orientation == 8:
        return y.T[::-1, :]
    return y


def background_level(y: np.ndarray) -> int:
    """The lower median of the outermost ring of pixels."""
    return _lower_median(_ring(y))


def _span(counts: np.ndarray, needed: int) -> tuple[int, int] | None:
    inside = np.flatnonzero(counts >= needed)
    return (int(inside[0]), int(inside[-1])) if inside.size else None


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in]: how much of each source pixel each output pixel covers (exact box filter)."""
    step = size_in / size_out
    low = np.arange(size_out, dtype=np.float64)[:, None] * step
    high = (np.arange(size_out, dtype=np.float64)[:, None] + 1.0) * step
    source = np.arange(size_in, dtype=np.float64)[None, :]
    overlap = np.minimum(high, source + 1.0) - np.maximum(low, source)
    return np.maximum(overlap, 0.0) / step


def fitted_size(height: int, width: int) -> tuple[int, int]:
    longest = max(height, width)
    return (
        max(1, (2 * spec.FIT * height + longest) // (2 * longest)),
        max(1, (2 * spec.FIT * width + longest) // (2 * longest)),
    )


def _standing_out(y: np.ndarray, background: int, light: bool) -> np.ndarray:
    """Pixels more than TOLERANCE lighter than the background after inverting a light one, compared
    on the stored levels (no full-size arithmetic): 255 - y - (255 - b) > t is y < b - t."""
    if light:
        limit = background - spec.TOLERANCE
        return y < limit if limit > 0 else np.zeros(y.shape, bool)
    limit = background + spec.TOLERANCE
    return y > limit if limit < 255 else np.zeros(y.shape, bool)


def prepare(y: np.ndarray, alpha: np.ndarray | None, orientation: int = 1) -> tuple[np.ndarray, Preparation]:
    """``y``: luminance [h, w] 0..255 (any integer type); ``alpha``: uint8 [h, w] or None ->
    float32 [28, 28, 1]."""
    done = Preparation(orientation=orientation)
    if alpha is not None and bool((alpha < 255).any()):
        y, done.alpha_background = composite(y, alpha)
    y = orient(y, orientation)
    height, width = y.shape
    done.background = background = background_level(y)
    light = background >= spec.LIGHT_BACKGROUND
    if (height, width) == (spec.SIDE, spec.SIDE) and not light:
        done.dataset_style = True
        return y.astype(np.float32).reshape(spec.SIDE, spec.SIDE, 1), done
    if int(y.min()) == int(y.max()):
        raise InvalidInput(f"The picture is all one colour (level {int(y.min())}): there is nothing to classify")
    lighter = _standing_out(y, background, light)
    needed = spec.MIN_RUN * max(1, min(height, width) // spec.MIN_RUN_PER)
    rows = _span(np.count_nonzero(lighter, axis=1), needed)
    columns = _span(np.count_nonzero(lighter, axis=0), needed)
    if light:
        background, done.inverted = 255 - background, True
    if rows is None or columns is None:
        raise InvalidInput(
            f"No object stands out from the background (level {background}, tolerance {spec.TOLERANCE}): "
            "send a picture of one item on a plain background"
        )
    (top, bottom), (left, right) = rows, columns
    box_height, box_width = bottom - top + 1, right - left + 1
    done.box = (left, top, box_width, box_height)
    crop = y[top : bottom + 1, left : right + 1].astype(np.int32)
    if light:
        crop = 255 - crop
    crop -= background + spec.BLACK_POINT
    levelled = np.maximum(crop, 0).astype(np.float32) * (
        np.float32(255) / np.float32(255 - background - spec.BLACK_POINT)
    )
    out_height, out_width = fitted_size(box_height, box_width)
    done.scaled_to = (out_width, out_height)
    small = area_weights(box_height, out_height) @ levelled.astype(np.float64) @ area_weights(box_width, out_width).T
    pad_top, pad_left = (spec.SIDE - out_height) // 2, (spec.SIDE - out_width) // 2
    done.padded = (pad_left, pad_top, spec.SIDE - out_width - pad_left, spec.SIDE - out_height - pad_top)
    canvas = np.zeros((spec.SIDE, spec.SIDE), np.float64)
    canvas[pad_top : pad_top + out_height, pad_left : pad_left + out_width] = small
    return np.clip(np.rint(canvas), 0, 255).astype(np.float32).reshape(spec.SIDE, spec.SIDE, 1), done
