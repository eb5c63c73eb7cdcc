"""PNG at the byte level, where Pillow falls short: 16-bit colour read (pypng) and written (by hand), chunks
walked without decoding pixels (the output marker, metadata too large for Pillow's limits).

Pillow holds 16-bit colour PNGs as 8 bits, so those pass through here; everything else uses Pillow.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png

SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXIF_PREFIX = b"Exif\x00\x00"
_TEXT = (b"tEXt", b"zTXt", b"iTXt")


def chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bit_depth(file: BinaryIO) -> int:
    """The bit depth in a PNG's header (Pillow opens 16-bit colour PNGs as 8-bit and does not say so)."""
    file.seek(0)
    header = file.read(26)
    return header[24]


def chunks(file: BinaryIO, stop: tuple[bytes, ...] = (b"IEND",)) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset of its data, length) of each chunk from the start of a PNG, until a `stop` type (which
    is yielded) or the end of the file; nothing is read but the 8-byte chunk headers."""
    file.seek(0)
    if file.read(8) != SIGNATURE:
        return
    offset = 8
    while len(head := file.read(8)) == 8:
        length, kind = struct.unpack(">I4s", head)
        yield kind, offset + 8, length
        if kind in stop:
            return
        offset += 12 + length
        file.seek(offset)


def read_png16(file: BinaryIO) -> np.ndarray:
    """Every channel of a 16-bit PNG at full precision, as H×W×C in [0, 1]; pypng applies tRNS and sBIT."""
    file.seek(0)
    width, height, rows, info = png.Reader(file=file).asDirect()
    samples = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    maximum = 2 ** info["bitdepth"] - 1
    return samples.reshape(height, width, info["planes"]).astype(np.float32) / maximum


def write_png16(file: BinaryIO, pixels: np.ndarray, icc: bytes | None, exif: bytes | None,
                text: dict[str, str] | None = None) -> None:
    """Write H×W×C uint16 samples as a 16-bit PNG (grey, grey+alpha, RGB or RGBA) with iCCP, eXIf and tEXt
    chunks (all before the pixels, where a reader of the header finds them).

    Every scanline uses PNG's "Up" filter (each byte minus the one above), which shrinks photos by about a fifth.
    """
    height, width, channels = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    file.write(SIGNATURE)
    file.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)))
    if icc:
        file.write(chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        file.write(chunk(b"eXIf", exif.removeprefix(EXIF_PREFIX)))
    file.writelines(chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1"))
                    for key, value in (text or {}).items())
    rows = pixels.astype(">u2").view(np.uint8).reshape(height, width * channels * 2)
    compressor = zlib.compressobj(6)
    above = np.zeros((1, rows.shape[1]), dtype=np.uint8)
    for start in range(0, height, 64):
        block = rows[start : start + 64]
        filtered = np.diff(block, axis=0, prepend=above)  # uint8 arithmetic wraps modulo 256, as PNG wants
        above = block[-1:]
        scanlines = np.hstack([np.full((len(block), 1), 2, dtype=np.uint8), filtered])  # filter type 2: Up
        if data := compressor.compress(scanlines.tobytes()):
            file.write(chunk(b"IDAT", data))
    file.write(chunk(b"IDAT", compressor.flush()))
    file.write(chunk(b"IEND", b""))


def without_oversized_metadata(path: Path, limit: int, largest_file: int) -> tuple[bytes, bool] | None:
    """A PNG's bytes without its text chunks (tEXt, zTXt, iTXt: unetsr keeps none) and without an ICC profile
    (iCCP) that inflates to more than `limit` bytes, and whether that profile was dropped: for PNGs whose
    metadata is beyond what Pillow reads. None for a file that is no PNG, is larger than `largest_file`
    bytes (it is read into memory), cannot be read, or has nothing to drop.

    A profile is inflated at most to `limit` + 1 bytes, so a zlib bomb costs no more than that."""
    try:
        with open(path, "rb") as file:
            if file.read(8) != SIGNATURE or os.fstat(file.fileno()).st_size > largest_file:
                return None
            file.seek(0)
            data = file.read()
    except OSError:
        return None
    kept, last, dropped_icc, dropped = [data[:8]], 8, False, False
    for kind, start, length in chunks(BytesIO(data)):
        big_icc = kind == b"iCCP" and _inflates_beyond(data[start:start + length], limit)
        if big_icc or kind in _TEXT:
            kept.append(data[last:start - 8])
            last = start + length + 4  # past the CRC
            dropped_icc, dropped = dropped_icc or big_icc, True
    if not dropped:
        return None
    kept.append(data[last:])
    return b"".join(kept), dropped_icc


def _inflates_beyond(body: bytes, limit: int) -> bool:
    """Whether an iCCP chunk's profile (name, 0, method, zlib data) inflates to more than `limit` bytes."""
    payload = body[body.find(b"\x00") + 2:]
    try:
        return len(zlib.decompressobj().decompress(payload, limit + 1)) > limit
    except zlib.error:
        return True  # Pillow cannot read it either: dropped
