"""The numbers that define picture preparation, shared by the gateway (numpy, ``serving.pictures``)
and the SavedModels' ``serving_bytes`` signature (TensorFlow ops, ``training.picture_graph``).

The written specification is docs/pictures.md; both implementations are tested against each other
(tests/integration/training/test_picture_parity.py). Change a number here and both follow.
"""

from __future__ import annotations

SIDE = 28  # the model's input is SIDE x SIDE, one channel, raw intensities 0..255
FIT = 28  # the object's longest side after scaling (Fashion-MNIST: "resizing the longest edge to 28")

# ITU-R 601-2 luma in 16.16 fixed point, as Pillow's convert("L"): (19595 R + 38470 G + 7471 B + 32768) >> 16.
LUMA_RED, LUMA_GREEN, LUMA_BLUE, LUMA_SHIFT = 19595, 38470, 7471, 16

# Transparency: where the outermost ring is mostly transparent (lower median alpha below OPAQUE), the
# background is transparent and the opaque pixels are the object: it goes on black when it is light
# (alpha-weighted mean luminance >= LIGHT_OBJECT), else on white, so it always stands out. Otherwise
# transparent pixels show the picture's own background: white when the ring's opaque pixels are
# light (lower median >= LIGHT_BACKGROUND), else black.
OPAQUE = 128
LIGHT_OBJECT = 128

# The background level is the lower median of the picture's outermost ring of pixels; at or above
# this it is a light background (a product photo) and the picture is inverted (negated).
LIGHT_BACKGROUND = 128

# A pixel belongs to the object when it is more than TOLERANCE levels lighter than the background
# (after the inversion): noise, JPEG ringing and light shadows stay under it.
TOLERANCE = 24
# A row (column) belongs to the object's box when it holds at least this many object pixels per
# MIN_RUN_PER pixels of the picture's shorter side (and at least one): lone specks do not count.
MIN_RUN = 1
MIN_RUN_PER = 200

# After cropping, the background level plus BLACK_POINT maps to 0 and white to 255 (exposure and
# background tint removed, noise at the background level clipped to the dataset's pure black).
BLACK_POINT = 8

# EXIF orientation is read from the first ~64 KiB: a JPEG's "Exif\0\0" APP1 payload or a PNG's eXIf chunk.
EXIF_WINDOW = 65536
EXIF_MAX_ENTRIES = 64
EXIF_ORIENTATION_TAG = 0x0112

# Pictures larger than this are refused (the gateway's default limits.max_image_pixels; the graph's fixed limit).
MAX_PIXELS = 4096 * 4096
