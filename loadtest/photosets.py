"""Photo-like test pictures made from real Fashion-MNIST test images (for ``python -m loadtest.photos``).

A dataset image is a light object on black: its intensity is how dark the product was in the
original photo. Each set turns it back into a photo of a dark object on a light background, at some
size and position, in some light, and encodes it the way cameras and web pages do. Every picture is
drawn from its own seeded generator, so a set is the same on every run and machine.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Luma weights (ITU-R 601-2) for tints that keep an object's brightness.
_LUMA = np.array([0.299, 0.587, 0.114])
# EXIF orientation -> the transform that stores a picture so that it is shown upright with that tag.
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class Look:
    """How one picture is made: canvas, object size and place, light, shadow, noise, encoding."""

    canvas: tuple[int, int] = (224, 224)  # width, height
    size: float = 1.0  # object's longest side / canvas's shorter side
    place: tuple[float, float] = (0.5, 0.5)  # object centre, as fractions of the free room
    light: tuple[float, float, float] = (1.0, 1.0, 1.0)  # light colour and exposure, per channel
    ink: tuple[float, float, float] = (1.0, 1.0, 1.0)  # the object's colour (luma 1: brightness kept)
    shadow: float = 0.0  # darkening of the drop shadow's core
    gradient: float = 0.0  # light falling off across the picture
    noise: float = 0.0  # sensor noise, levels (standard deviation)
    dark: bool = False  # keep the dataset's polarity (light object on black)
    quality: int | None = None  # JPEG quality; None: PNG
    orientation: int = 1  # EXIF orientation tag to store the picture with


def photo(image: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 dataset image -> RGB uint8 pixels [h, w, 3] as the look says (upright)."""
    width, height = look.canvas
    side = max(8, round(look.size * min(width, height)))
    darkness = (
        np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64) / 255.0
    )
    coverage = np.zeros((height, width))
    left = round(look.place[0] * (width - side))
    top = round(look.place[1] * (height - side))
    coverage[top : top + side, left : left + side] = darkness
    if look.dark:
        pixels = coverage[..., None] * np.asarray(look.light)[None, None, :] * 255.0
    else:
        reflectance = np.clip(1.0 - coverage[..., None] * np.asarray(look.ink)[None, None, :], 0.0, 1.0)
        if look.shadow:
            reflectance *= 1.0 - look.shadow * _shadow(coverage, side)[..., None]
        light = np.asarray(look.light)[None, None, :] * (1.0 - look.gradient * np.linspace(0, 1, width))[None, :, None]
        pixels = 255.0 * light * reflectance
    if look.noise:
        pixels = pixels + rng.normal(0.0, look.noise, pixels.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _shadow(coverage: np.ndarray, side: int) -> np.ndarray:
    from PIL import ImageFilter

    mask = Image.fromarray(np.clip(coverage * 4.0, 0, 1).astype(np.float32) * 255).convert("L")
    offset = max(1, side // 25)
    blurred = mask.filter(ImageFilter.GaussianBlur(max(1.0, side / 30)))
    moved = Image.new("L", mask.size)
    moved.paste(blurred, (offset, offset))
    return np.asarray(moved, dtype=np.float64) / 255.0


def encode(pixels: np.ndarray, look: Look) -> bytes:
    image = Image.fromarray(pixels)
    options: dict[str, object] = {}
    if look.orientation != 1:
        image = image.transpose(_STORE[look.orientation])
        exif = Image.Exif()
        exif[0x0112] = look.orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    if look.quality is None:
        image.save(buffer, format="PNG", **options)
    else:
        image.save(buffer, format="JPEG", quality=look.quality, **options)
    return buffer.getvalue()


def _canvas(rng: np.random.Generator) -> tuple[int, int]:
    short = int(rng.integers(160, 481))
    ratio = float(rng.uniform(1.0, 1.5))
    long = min(640, round(short * ratio))
    return (long, short) if rng.random() < 0.5 else (short, long)


def _placed(rng: np.random.Generator) -> Look:
    return Look(
        canvas=_canvas(rng),
        size=float(rng.uniform(0.25, 0.95)),
        place=(float(rng.random()), float(rng.random())),
    )


def _ink(rng: np.random.Generator) -> tuple[float, float, float]:
    colour = rng.uniform(0.3, 1.0, 3)
    colour = colour / float(colour @ _LUMA)
    return (float(colour[0]), float(colour[1]), float(colour[2]))


def _light(rng: np.random.Generator) -> tuple[float, float, float]:
    exposure = float(rng.uniform(0.8, 1.0))
    tint = rng.uniform(0.9, 1.0, 3)
    tint = tint / tint.max()
    return (exposure * float(tint[0]), exposure * float(tint[1]), exposure * float(tint[2]))


def _tinted(rng: np.random.Generator) -> Look:
    base = _placed(rng)
    return Look(canvas=base.canvas, size=base.size, place=base.place, light=_light(rng), ink=_ink(rng))


def _jpeg(rng: np.random.Generator) -> Look:
    base = _placed(rng)
    return Look(canvas=base.canvas, size=base.size, place=base.place, quality=int(rng.integers(60, 96)))


def _exif(rng: np.random.Generator) -> Look:
    base = _placed(rng)
    return Look(canvas=base.canvas, size=base.size, place=base.place, quality=90, orientation=int(rng.integers(2, 9)))


def _shadowed(rng: np.random.Generator) -> Look:
    base = _placed(rng)
    return Look(
        canvas=base.canvas,
        size=base.size,
        place=base.place,
        shadow=float(rng.uniform(0.05, 0.15)),
        gradient=float(rng.uniform(0.0, 0.06)),
        noise=float(rng.uniform(1.0, 4.0)),
        quality=85,
    )


def _everything(rng: np.random.Generator) -> Look:
    base = _placed(rng)
    return Look(
        canvas=base.canvas,
        size=base.size,
        place=base.place,
        light=_light(rng),
        ink=_ink(rng),
        shadow=float(rng.uniform(0.0, 0.15)),
        gradient=float(rng.uniform(0.0, 0.06)),
        noise=float(rng.uniform(0.0, 4.0)),
        quality=int(rng.integers(60, 96)),
        orientation=int(rng.integers(1, 9)),
    )


# name -> (what it is, how each picture looks); "dataset" is the 28x28 PNG itself.
SETS: dict[str, tuple[str, Callable[[np.random.Generator], Look]]] = {
    "dark-224": (
        "dataset polarity (light on black), enlarged to 224x224, RGB JPEG q90",
        lambda rng: Look(dark=True, quality=90),
    ),
    "light-224": ("inverted: dark object on white, enlarged to fill 224x224, PNG", lambda rng: Look()),
    "placed": ("on white, object 25-95% of a 160-640 px canvas, anywhere in it, PNG", _placed),
    "tinted": ("as placed, coloured light (exposure 0.8-1) and coloured object of the same brightness", _tinted),
    "jpeg": ("as placed, JPEG quality 60-95", _jpeg),
    "exif": ("as placed, stored turned or mirrored with EXIF orientation 2-8, JPEG q90", _exif),
    "shadow": ("as placed, drop shadow 5-15%, light fall-off up to 6%, noise 1-4 levels, JPEG q85", _shadowed),
    "everything": ("all of the above at once, orientation 1-8, JPEG 60-95", _everything),
}


def build(name: str, images: np.ndarray, seed: int = 0) -> list[bytes]:
    """Encoded pictures of one set, one per dataset image (``dataset``: the 28x28 PNGs)."""
    if name == "dataset":
        return [_png(image) for image in images]
    _, make = SETS[name]
    pictures = []
    for index, image in enumerate(images):
        rng = np.random.default_rng([seed, index, zlib.crc32(name.encode())])
        look = make(rng)
        pictures.append(encode(photo(image, look, rng), look))
    return pictures


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
