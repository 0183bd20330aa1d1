"""EXIF orientation read from the raw bytes, by the same rule as the graph (docs/pictures.md):

the first ``EXIF_WINDOW`` bytes are searched for the first ``Exif\\0\\0`` (JPEG) or ``eXIf`` (PNG)
marker; a TIFF header ("II" or "MM", 42) follows it; IFD0's first ``EXIF_MAX_ENTRIES`` entries are
searched for tag 0x0112 of type SHORT; a value from 1 to 8 is the orientation, anything else 1.
"""

from __future__ import annotations

from typing import Literal

from serving.pictures.spec import EXIF_MAX_ENTRIES, EXIF_ORIENTATION_TAG, EXIF_WINDOW

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SHORT = 3


def _tiff_start(window: bytes) -> int | None:
    if window.startswith(JPEG_MAGIC):
        marker = b"Exif\x00\x00"
    elif window.startswith(PNG_MAGIC):
        marker = b"eXIf"
    else:
        return None
    position = window.find(marker)
    return None if position < 0 else position + len(marker)


def orientation(data: bytes) -> int:
    window = data[:EXIF_WINDOW]
    tiff = _tiff_start(window)
    if tiff is None or tiff + 8 > len(window):
        return 1
    order = window[tiff : tiff + 2]
    if order not in (b"II", b"MM"):
        return 1
    endian: Literal["little", "big"] = "little" if order == b"II" else "big"

    def number(position: int, size: int) -> int:
        return int.from_bytes(window[position : position + size], endian)

    if number(tiff + 2, 2) != 42:
        return 1
    directory = tiff + number(tiff + 4, 4)
    if directory + 2 > len(window):
        return 1
    for index in range(min(number(directory, 2), EXIF_MAX_ENTRIES)):
        entry = directory + 2 + 12 * index
        if entry + 10 > len(window):
            return 1
        if number(entry, 2) == EXIF_ORIENTATION_TAG:
            value = number(entry + 8, 2)
            return value if number(entry + 2, 2) == _SHORT and 1 <= value <= 8 else 1
    return 1
