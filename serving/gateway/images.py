"""Images for the friendly API: PNG/JPEG bytes, base64 strings or pixel arrays -> the model's input.

The contract input is one float32 ``[28, 28, 1]`` image of raw intensities 0..255. Pictures are
prepared by ``serving.pictures`` (docs/pictures.md), the same definition the SavedModels'
``serving_bytes`` signature runs in the graph: dataset-style 28x28 pictures are used as sent, photos
are inverted, trimmed, fitted and centred. The steps are reported, and on request the 28x28 itself.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import InvalidInput, PayloadTooLarge
from serving.pictures import Preparation, decode, orientation, prepare
from serving.pictures.prepare import background_level, luma
from serving.pictures.spec import LIGHT_BACKGROUND, SIDE

_FLAT = SIDE * SIDE


@dataclass
class Conversion:
    """What was done to one image to fit the contract (empty ``steps``: used as sent)."""

    source: str  # "png", "jpeg", ... or "array"
    width: int
    height: int
    mode: str
    steps: list[str] = field(default_factory=list)
    prepared: Preparation | None = None

    def report(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "converted": self.steps,
            "prepared": self.prepared.report() if self.prepared else None,
        }


def png_data_url(array: np.ndarray) -> str:
    """The 28x28 the model saw, as a PNG data URL (``?debug=1``)."""
    from PIL import Image

    buffer = io.BytesIO()
    pixels = np.clip(np.rint(array.reshape(SIDE, SIDE)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _prepared(
    y: np.ndarray, alpha: np.ndarray | None, turn: int, conversion: Conversion
) -> tuple[np.ndarray, Conversion]:
    array, conversion.prepared = prepare(y, alpha, turn)
    conversion.steps.extend(conversion.prepared.steps())
    return array, conversion


def from_bytes(data: bytes, max_pixels: int) -> tuple[np.ndarray, Conversion]:
    """Decode and prepare an encoded image (any format Pillow reads). Blocking: call it off the event
    loop for large inputs."""
    planes = decode(data, max_pixels)
    conversion = Conversion(planes.format, planes.width, planes.height, planes.mode)
    if planes.mode != "L":
        conversion.steps.append(f"grayscale from {planes.mode}")
    return _prepared(planes.y, planes.alpha, orientation(data), conversion)


def from_base64(text: str, max_pixels: int) -> tuple[np.ndarray, Conversion]:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("Unable to base64 decode the image") from None
    return from_bytes(data, max_pixels)


def from_pixels(value: Any, max_pixels: int) -> tuple[np.ndarray, Conversion]:
    """A pixel array: 784 values, or [h][w], [h][w][1], [h][w][3] or [h][w][4], values 0..255."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidInput("A pixel array must be a regular nested list of numbers") from None
    if array.ndim == 1 and array.size == _FLAT:
        array = array.reshape(SIDE, SIDE)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) or 0 in array.shape:
        raise InvalidInput(
            f"A pixel array must be 784 values or [height][width] (optionally x1, x3 or x4 channels); "
            f"got shape {list(array.shape)}"
        )
    height, width = array.shape[:2]
    if width * height > max_pixels:
        raise PayloadTooLarge(f"Image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 255:
        raise InvalidInput("Pixel values must be numbers from 0 to 255")
    mode = "L" if array.ndim == 2 else ("RGB" if array.shape[2] == 3 else "RGBA")
    conversion = Conversion("array", width, height, mode)
    pixels = np.rint(array).astype(np.int32)
    if mode == "L" and (height, width) == (SIDE, SIDE) and background_level(pixels) < LIGHT_BACKGROUND:
        conversion.prepared = Preparation(background=background_level(pixels), dataset_style=True)
        return array.astype(np.float32).reshape(SIDE, SIDE, 1), conversion  # the model's own input, as sent
    if mode == "L":
        return _prepared(pixels, None, 1, conversion)
    conversion.steps.append(f"grayscale from {mode}")
    y = luma(pixels[..., 0], pixels[..., 1], pixels[..., 2])
    return _prepared(y, pixels[..., 3].astype(np.uint8) if mode == "RGBA" else None, 1, conversion)
