"""Reduced-resolution decoding for thumbnails.

Decoding is the cost of a thumbnail (FIELD-NOTES: JPEG 2000 takes 350-550 ms for a 2500x2000 CR
image). Two encodings can be decoded at a fraction of full size for much less:

* JPEG 2000 (1.2.840.10008.1.2.4.90/91): the wavelet resolution levels. Pillow's OpenJPEG
  plugin decodes with ``reduce = k`` (discarding the ``k`` finest levels) about 10-40x faster.
  Pillow scales samples to 16 bits, so they are shifted back to the codestream precision.
* JPEG Baseline (1.2.840.10008.1.2.4.50): DCT scaling (1/2, 1/4, 1/8) in libjpeg via OpenCV.
* Uncompressed little-endian files: :func:`native_decimated` memory-maps the pixel data and
  copies every n-th row and column, so only a fraction of the pages is touched.

Anything else (or any failure here) returns ``None`` and the caller decodes at full size.
"""

from __future__ import annotations

import io
import math
import warnings

import cv2
import numpy as np
from pydicom import uid as _uid
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.encaps import get_frame

__all__ = ["decode_reduced", "j2k_header", "native_decimated"]

_NATIVE_LE = {_uid.ExplicitVRLittleEndian, _uid.ImplicitVRLittleEndian}

_J2K = {_uid.JPEG2000Lossless, _uid.JPEG2000}


def j2k_header(cs: bytes) -> tuple[int, int, bool, int] | None:
    """(components, precision, signed, decomposition levels) from a J2K main header."""
    start = cs.find(b"\xff\x4f\xff\x51")
    if start < 0 or len(cs) < start + 48:
        return None
    p = start + 4
    lsiz = int.from_bytes(cs[p:p + 2], "big")
    comps = int.from_bytes(cs[p + 36:p + 38], "big")
    ssiz = cs[p + 38]
    q = p + lsiz
    while q + 4 <= len(cs):
        marker = cs[q:q + 2]
        length = int.from_bytes(cs[q + 2:q + 4], "big")
        if marker == b"\xff\x52":  # COD: Lcod Scod SGcod(4) SPcod: levels first
            if q + 9 >= len(cs):
                return None
            return comps, (ssiz & 0x7F) + 1, bool(ssiz & 0x80), cs[q + 9]
        if marker == b"\xff\x90" or length < 2:  # first tile: the main header is over
            return None
        q += 2 + length
    return None


def _levels_for(rows: int, cols: int, target: int) -> int:
    """Halvings that keep the long side at least ``1.5 * target`` (the area filter that follows
    still averages >= 1.5 samples per output pixel)."""
    ratio = max(rows, cols) / (1.5 * max(target, 1))
    return int(math.floor(math.log2(ratio))) if ratio >= 2 else 0


def _j2k_reduced(cs: bytes, rows: int, cols: int, target: int) -> tuple[np.ndarray, int] | None:
    info = j2k_header(cs)
    if info is None:
        return None
    comps, precision, signed, levels = info
    k = min(_levels_for(rows, cols, target), levels)
    if comps != 1 or signed or k <= 0 or precision > 16:
        return None
    try:
        from PIL import Image
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = Image.open(io.BytesIO(cs))
        setattr(img, "reduce", k)  # noqa: B010 - Jpeg2KImageFile: resolution levels to discard
        # OpenJPEG decodes ceil(side / 2^k) samples per side; Pillow (13) sizes its buffer as
        # round(side / 2^k), so a side that 2^k does not divide (1841 at k = 2) fails and every
        # such film fell back to a full decode. Start Pillow from sides rounded up to a multiple
        # of 2^k: its rounding then gives exactly OpenJPEG's ceil (checked below).
        power = 1 << k
        want = (-(-img.size[0] // power), -(-img.size[1] // power))
        img._size = (want[0] * power, want[1] * power)
        img.load()
        arr = np.asarray(img)
    if arr.shape[:2] != (want[1], want[0]):
        return None
    if arr.dtype == np.uint16 and precision < 16:
        arr = arr >> (16 - precision)
    elif arr.dtype == np.uint8 and precision < 8:
        arr = arr >> (8 - precision)
    top = 2**precision - 1
    if arr.max(initial=0) > top:  # 5/3 low-pass overshoot at edges
        arr = np.minimum(arr, top)
    return np.ascontiguousarray(arr.astype(np.uint16 if precision > 8 else np.uint8)), 2**k


def _jpeg_reduced(cs: bytes, rows: int, cols: int, target: int,
                  colour: bool) -> tuple[np.ndarray, int] | None:
    k = min(_levels_for(rows, cols, target), 3)
    if k <= 0:
        return None
    flags = {1: (cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_COLOR_2),
             2: (cv2.IMREAD_REDUCED_GRAYSCALE_4, cv2.IMREAD_REDUCED_COLOR_4),
             3: (cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_REDUCED_COLOR_8)}[k][int(colour)]
    arr = cv2.imdecode(np.frombuffer(cs, np.uint8), flags)
    if arr is None:
        return None
    if colour:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return arr, 2**k


def decode_reduced(ds: Dataset, frame: int, target: int) -> tuple[np.ndarray, int] | None:
    """Decode ``frame`` at a reduced resolution whose long side stays >= ``2 * target``.

    Returns
    -------
    (pixels, factor) | None
        Stored values (grey) or RGB uint8, shrunk by ``factor`` in each direction; ``None``
        when this encoding or file cannot be decoded reduced (decode it at full size instead).
    """
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if ts not in _J2K and ts != _uid.JPEGBaseline8Bit:
        return None
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if int(ds.get("PixelRepresentation", 0) or 0) != 0:
        return None
    # Only what the full decode displays (a damaged or palette header must fail there, not
    # show a stand-in first).
    if photometric not in (("MONOCHROME1", "MONOCHROME2") if spp == 1 else ("YBR_FULL", "YBR_FULL_422", "RGB")):
        return None
    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        cs = get_frame(ds.PixelData, frame, number_of_frames=n_frames)
        if ts in _J2K:
            return None if spp != 1 else _j2k_reduced(cs, rows, cols, target)
        if spp == 3 and photometric not in ("YBR_FULL_422", "YBR_FULL"):
            return None  # RGB-in-JPEG: libjpeg's colour guess is not reliable
        return _jpeg_reduced(cs, rows, cols, target, colour=spp == 3)
    except Exception:
        return None
    except BaseException as exc:  # a Rust decoder's panic (pyo3 PanicException): decode fully
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        return None


def native_decimated(path: str, ds: Dataset, frame: int, target: int) -> tuple[np.ndarray, int] | None:
    """Every n-th row/column of an uncompressed little-endian greyscale frame, via ``np.memmap``.

    ``ds`` must have been read with ``defer_size`` so that (7FE0,0010) Pixel Data is still a raw,
    deferred element whose file offset is known. Returns ``(pixels, n)`` or ``None``.
    """
    meta = getattr(ds, "file_meta", None)
    ts = getattr(meta, "TransferSyntaxUID", None)
    if ts not in _NATIVE_LE:
        return None
    raw = ds._dict.get(Tag(0x7FE00010))  # the raw element keeps the offset; reading it would not
    tell = getattr(raw, "value_tell", None)
    if tell is None or getattr(raw, "value", 1) is not None:
        return None
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    bits = int(ds.get("BitsAllocated", 0) or 0)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or bits not in (8, 16) or not rows or not cols:
        return None
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    dtype = np.dtype(("<i" if signed else "<u") + str(bits // 8))
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    frame_bytes = rows * cols * dtype.itemsize
    if int(getattr(raw, "length", 0)) < frame_bytes * n_frames or not 0 <= frame < n_frames:
        return None
    step = max(1, int(max(rows, cols) // (2 * max(target, 1))))
    if step < 2:
        return None
    mm = np.memmap(path, dtype=dtype, mode="r", offset=tell + frame * frame_bytes, shape=(rows, cols))
    try:
        out = np.array(mm[::step, ::step])
    finally:
        del mm
    bits_stored = int(ds.get("BitsStored", bits) or bits)
    if not signed and bits_stored < bits:
        out &= np.asarray((1 << bits_stored) - 1, dtype=out.dtype)
    return out, step
