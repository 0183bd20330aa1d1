"""Encoded bytes -> luminance and alpha planes with Pillow, decoding exactly as TensorFlow's ops do
for PNG, JPEG, GIF, BMP and WebP (docs/pictures.md, "Decoding"); other formats Pillow reads work
in the gateway only."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.errors import InvalidInput, PayloadTooLarge
from serving.pictures.exif import PNG_MAGIC
from serving.pictures.prepare import luma
from serving.pictures.spec import EXIF_WINDOW

# What Pillow raises on bytes it cannot decode: besides OSError/ValueError, its plugins raise SyntaxError
# ("broken PNG file" for a bad chunk met while loading), EOFError, struct.error and IndexError.
_UNDECODABLE = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError)
_NOT_DECODED = "The image could not be decoded: send PNG or JPEG bytes"
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


@dataclass
class Planes:
    """A decoded picture: luminance [h, w] 0..255 (uint8 from Pillow's own conversion, int32 where it is
    computed here: 16-bit, float, CMYK, GIF) and uint8 alpha (None when opaque by format)."""

    format: str
    mode: str
    width: int
    height: int
    y: np.ndarray
    alpha: np.ndarray | None


def png_has_alpha(data: bytes) -> bool:
    """Colour type with alpha (4, 6), or a tRNS chunk before the first IDAT in the first EXIF_WINDOW
    bytes; never grayscale under 8 bits (TensorFlow decodes its alpha wrongly)."""
    if len(data) < 26:
        return False
    depth, colour_type = data[24], data[25]
    if colour_type in (4, 6):
        return True
    window = data[:EXIF_WINDOW]
    transparency, pixels = window.find(b"tRNS"), window.find(b"IDAT")
    return transparency >= 0 and (pixels < 0 or transparency < pixels) and not (colour_type == 0 and depth < 8)


def _planes(image: Any, opaque: bool) -> tuple[np.ndarray, np.ndarray | None]:
    mode, fmt = image.mode, image.format
    if mode in _SIXTEEN_BIT or mode == "I":  # 16-bit grayscale: keep the high byte (as libpng's 16 -> 8)
        return np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.int32) >> 8, None
    if mode == "F":
        return np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.int32), None
    if mode == "CMYK":  # TensorFlow's CMYK JPEG conversion: each channel (255 - c) * (255 - k) / 255, floored
        cmyk = np.asarray(image, dtype=np.int32)
        ink = 255 - cmyk[..., 3]
        red, green, blue = ((255 - cmyk[..., channel]) * ink // 255 for channel in range(3))
        return luma(red, green, blue), None
    if fmt == "GIF":  # TensorFlow's GIF decoder has no alpha: transparent pixels are black
        rgba = np.asarray(image.convert("RGBA"))
        rgb = np.where(rgba[..., 3:] == 0, 0, rgba[..., :3])
        return luma(rgb[..., 0], rgb[..., 1], rgb[..., 2]), None
    transparent = mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info
    if fmt == "BMP" or opaque or not transparent:
        if mode not in ("L", "1", "RGB"):
            image = image.convert("RGB")  # palette, YCbCr, LAB...: their colours first, then luma
        return np.asarray(image.convert("L")), None  # Pillow's RGB -> L is ``luma`` exactly, in C
    rgba = image.convert("RGBA")
    return np.asarray(rgba.convert("L")), np.asarray(rgba.getchannel("A"))


def decode(data: bytes, max_pixels: int) -> Planes:
    """Decode an encoded picture (any format Pillow reads). Blocking: call it off the event loop for
    large inputs."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidInput("The image is empty (0 bytes): send PNG or JPEG bytes")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own refusal (over 2x its limit): a header that lies
        raise PayloadTooLarge(f"Image is over the limit of {max_pixels} pixels") from None
    except (UnidentifiedImageError, *_UNDECODABLE):
        raise InvalidInput(_NOT_DECODED) from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(f"Image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
    try:
        image.load()
        y, alpha = _planes(image, opaque=data.startswith(PNG_MAGIC) and not png_has_alpha(data))
    except (*_UNDECODABLE, Image.DecompressionBombError):
        raise InvalidInput(_NOT_DECODED) from None
    return Planes((image.format or "image").lower(), image.mode, width, height, y, alpha)
