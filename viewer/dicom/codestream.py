"""The frame header of a compressed codestream, read before any decoder sees it.

A native decoder trusts its codestream: a 666-byte JPEG-LS frame whose header claims
65000 x 65000 pixels made CharLS throw ``std::length_error`` and abort the whole process, and a
20000 x 20000 claim allocated 889 MB before a clean refusal (issue 15). The data set's own
(0028,0010) Rows, (0028,0011) Columns, (0028,0002) Samples per Pixel and (0028,0100) Bits
Allocated have already passed the size limits, so a frame that claims anything else is refused
here, in Python, from its first bytes:

- JPEG (ISO 10918: baseline, extended, lossless): the SOFn segment (``FFC0``-``FFCF`` but
  ``C4``, ``C8``, ``CC``): precision, lines, samples per line, components;
- JPEG-LS (ISO 14495): ``FFF7`` (SOF55), same layout;
- JPEG 2000 (ISO 15444-1): the SIZ segment (``FF51``) after SOC (``FF4F``), possibly inside a
  JP2 box wrapper: image and offset sizes, components and their depth.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["FrameHeader", "frame_header", "check_frame_header"]

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}


@dataclass(frozen=True)
class FrameHeader:
    rows: int
    cols: int
    components: int
    bits: int
    kind: str


def _jpeg_family(data: bytes) -> FrameHeader | None:
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF_MARKERS:
            if pos + 10 > n:
                return None
            bits, rows, cols, comps = struct.unpack_from(">BHHB", data, pos + 4)
            return FrameHeader(rows, cols, comps, bits, "JPEG-LS" if marker == 0xF7 else "JPEG")
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        pos += 2 + length
    return None


def _j2k_siz(data: bytes) -> FrameHeader | None:
    start = data.find(b"\xff\x4f\xff\x51")
    if start < 0 or start > 4096:
        return None
    pos = start + 4
    if pos + 38 > len(data):
        return None
    _lsiz, _rsiz, xsiz, ysiz, xo, yo = struct.unpack_from(">HHIIII", data, pos)
    (csiz,) = struct.unpack_from(">H", data, pos + 36)
    depths = [data[pos + 38 + 3 * i] for i in range(min(csiz, 4)) if pos + 38 + 3 * i < len(data)]
    bits = max(((d & 0x7F) + 1 for d in depths), default=0)
    return FrameHeader(max(ysiz - yo, 0), max(xsiz - xo, 0), csiz, bits, "JPEG 2000")


def frame_header(data: bytes) -> FrameHeader | None:
    """The frame header of a JPEG, JPEG-LS or JPEG 2000 codestream, or ``None`` if ``data``
    is none of these (or too short to tell)."""
    head = bytes(data[:65536])
    if head[:2] == b"\xff\xd8":
        return _jpeg_family(head)
    if head[:4] == b"\xff\x4f\xff\x51" or head[4:8] == b"jP  " or b"\xff\x4f\xff\x51" in head[:4096]:
        return _j2k_siz(head)
    return None


def check_frame_header(data: bytes, rows: int, cols: int, samples: int, bits_allocated: int) -> str | None:
    """Why a frame must not be decoded (its header contradicts the data set), or ``None``.

    A frame with no recognisable header is left to the decoder (RLE, or a codec we do not
    parse); so are JPEG 2000 frames whose size is a reduced resolution of the declared one.
    """
    fh = frame_header(data)
    if fh is None:
        return None
    if fh.kind == "JPEG-LS" and not bytes(data[-16:]).rstrip(b"\x00\xff").endswith(b"\xff\xd9"):
        # CharLS loops for ever on some truncated streams (found by our fuzzing).
        return "its JPEG-LS frame is truncated (no end-of-image marker)"
    if (fh.rows, fh.cols) != (rows, cols):
        return (f"its {fh.kind} frame header declares {fh.cols} x {fh.rows} pixels but (0028,0011) "
                f"Columns x (0028,0010) Rows say {cols} x {rows}")
    if fh.components != samples:
        return (f"its {fh.kind} frame header declares {fh.components} components but (0028,0002) "
                f"Samples per Pixel says {samples}")
    if fh.bits > max(bits_allocated, 8) or fh.bits == 0:
        return (f"its {fh.kind} frame header declares {fh.bits}-bit samples but (0028,0100) Bits "
                f"Allocated says {bits_allocated}")
    return None
