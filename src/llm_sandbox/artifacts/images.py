"""What a captured file is: its format from its name, checked against its first bytes, and for raster images their
size in pixels and resolution, read from the headers (PNG's IHDR and pHYs chunks, JPEG's JFIF and SOF segments).

Every byte comes from the sandbox: the readers look only at the bytes there are, and a header they cannot read
gives ``None`` values, never an error.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from llm_sandbox.data import FileType

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"
INCH_M = 0.0254
# JPEG start-of-frame markers (baseline, progressive, lossless...): they carry the image's height and width.
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# Names the formats are written under besides their FileType value.
EXTENSION_ALIASES = {"jpg": FileType.JPEG, "tif": FileType.TIFF, "rgba": FileType.RAW, "htm": FileType.HTML}


@dataclass(frozen=True)
class ImageSize:
    width: int | None = None
    height: int | None = None
    dpi: int | None = None


def file_type(name: str) -> FileType | None:
    """The format a file's extension names (None when it names none the library knows)."""
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    if extension in EXTENSION_ALIASES:
        return EXTENSION_ALIASES[extension]
    try:
        return FileType(extension)
    except ValueError:
        return None


def image_size(kind: FileType, data: bytes) -> ImageSize:
    """Pixels and dots per inch of a PNG or JPEG (None where the header does not say); nothing for other kinds."""
    if kind is FileType.PNG:
        return png_size(data)
    if kind is FileType.JPEG:
        return jpeg_size(data)
    return ImageSize()


def png_size(data: bytes) -> ImageSize:
    if not data.startswith(PNG_SIGNATURE) or len(data) < 24 or data[12:16] != b"IHDR":
        return ImageSize()
    width, height = struct.unpack(">II", data[16:24])
    return ImageSize(width, height, png_dpi(data))


def png_dpi(data: bytes) -> int | None:
    """The resolution of a pHYs chunk in metres (it comes before the image data, if at all)."""
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"pHYs" and len(body) == 9:
            per_x, _per_y, unit = struct.unpack(">IIB", body)
            return round(per_x * INCH_M) if unit == 1 and per_x else None
        if kind in (b"IDAT", b"IEND"):
            return None
        offset += 12 + length
    return None


def jpeg_size(data: bytes) -> ImageSize:
    if not data.startswith(JPEG_START):
        return ImageSize()
    width = height = dpi = None
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        body = data[offset + 4 : offset + 2 + length]
        if marker == 0xE0 and body.startswith(b"JFIF\x00") and len(body) >= 12:
            unit, density_x = body[7], struct.unpack(">H", body[8:10])[0]
            dpi = density_x if unit == 1 else round(density_x * 2.54) if unit == 2 else None
        elif marker in SOF_MARKERS and len(body) >= 5:
            height, width = struct.unpack(">HH", body[1:5])
            break
        if length < 2:
            break
        offset += 2 + length
    return ImageSize(width, height, dpi or None)
