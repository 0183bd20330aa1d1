"""Images for the friendly API: PNG/JPEG bytes, base64 strings or pixel arrays -> the model's input.

The contract input is one float32 ``[28, 28, 1]`` image of raw intensities 0..255. Anything else is
converted (colour to grayscale with ITU-R 601-2 luma, other sizes resized with a box filter) and the
steps are reported, so a caller can see what the model actually saw.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.errors import InvalidInput, PayloadTooLarge

SIDE = 28
_FLAT = SIDE * SIDE


@dataclass
class Conversion:
    """What was done to one image to fit the contract (empty ``steps``: used as sent)."""

    source: str  # "png", "jpeg", ... or "array"
    width: int
    height: int
    mode: str
    steps: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "converted": self.steps,
        }


def _fit(image: Any, conversion: Conversion) -> np.ndarray:
    from PIL import Image

    if image.mode != "L":
        image = image.convert("L")
        conversion.steps.append(f"grayscale from {conversion.mode}")
    if image.size != (SIDE, SIDE):
        image = image.resize((SIDE, SIDE), Image.Resampling.BOX)
        conversion.steps.append(f"resized {conversion.width}x{conversion.height} to {SIDE}x{SIDE}")
    return np.asarray(image, dtype=np.float32).reshape(SIDE, SIDE, 1)


# What Pillow raises on bytes it cannot decode: besides OSError/ValueError, its plugins raise SyntaxError
# ("broken PNG file" for a bad chunk met while loading), EOFError, struct.error and IndexError.
_UNDECODABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)


def from_bytes(data: bytes, max_pixels: int) -> tuple[np.ndarray, Conversion]:
    """Decode an encoded image (any format Pillow reads). Blocking: call it off the event loop for
    large inputs."""
    from PIL import Image, UnidentifiedImageError

    image: Any
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own refusal (over 2x its limit): a header that lies
        raise PayloadTooLarge(f"Image is over the limit of {max_pixels} pixels") from None
    except (UnidentifiedImageError, *_UNDECODABLE):
        raise InvalidInput("The image could not be decoded: send PNG or JPEG bytes") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(f"Image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
    conversion = Conversion((image.format or "image").lower(), width, height, image.mode)
    try:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
            conversion.steps.append("alpha composited on black")
        image.load()
        return _fit(image, conversion), conversion
    except (*_UNDECODABLE, Image.DecompressionBombError):
        raise InvalidInput("The image could not be decoded: send PNG or JPEG bytes") from None


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
    if mode == "L" and (height, width) == (SIDE, SIDE):
        return array.astype(np.float32).reshape(SIDE, SIDE, 1), conversion
    from PIL import Image

    image = Image.fromarray(np.rint(array).astype(np.uint8))
    if mode == "RGBA":
        image = image.convert("RGB")
        conversion.steps.append("alpha dropped")
    return _fit(image, conversion), conversion
