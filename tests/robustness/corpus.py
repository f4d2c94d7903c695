"""A seeded corpus of malformed inputs, generated at test time in a temporary folder.

Seeds come from the real files in ``shared/data/dicom`` (their headers, and for the smallest
ones the files themselves) and from real PNG/JPEG radiographs in ``shared/data`` (their pixels,
shrunk). Nothing derived from them is ever written inside the repository: :func:`build_corpus`
writes under the folder it is given (a pytest ``tmp_path``).

Each :class:`Item` names its ``family`` (how it was broken), so the report can count outcomes
per kind of damage.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless,
    JPEGBaseline8Bit, JPEGLSLossless,
    RLELossless,
)

__all__ = ["Item", "build_corpus", "real_image_files", "real_dicom_files"]

# Full-size real files are mutated only when at most this large (decode time dominates).
_SMALL_REAL_BYTES = 300 * 1024
_SEED_SHAPE = (48, 64)

_TS_CHOICES = (b"1.2.840.10008.1.2", b"1.2.840.10008.1.2.1", b"1.2.840.10008.1.2.2",
               b"1.2.840.10008.1.2.5", b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.90",
               b"1.2.840.10008.1.2.4.80", b"1.2.840.10008.1.2.1.99", b"1.2.3.4.5.6.7.8.9",
               b"not-a-uid", b"")
_VR_CHOICES = (b"ZZ", b"SQ", b"OB", b"UN", b"US", b"UT", b"\x00\x00", b"FD", b"AE")
# Tags whose encoded element the VR/length mutation rewrites (explicit little endian bytes).
_TARGET_TAGS = (0x00020010, 0x00080016, 0x00080018, 0x00100010, 0x00100020, 0x0020000D,
                0x00280002, 0x00280004, 0x00280010, 0x00280011, 0x00280100, 0x00280101,
                0x7FE00010)


@dataclass(frozen=True)
class Item:
    """One corpus entry: a file or folder to open, and how it was made."""

    path: Path
    family: str


def real_dicom_files(shared: Path | None) -> list[Path]:
    if shared is None or not (shared / "dicom").is_dir():
        return []
    return sorted(p for p in (shared / "dicom").rglob("*.dcm") if p.is_file())


def real_image_files(shared: Path | None, limit: int = 24) -> list[Path]:
    """A few small real PNG/JPEG radiographs (sorted, so the choice is stable)."""
    if shared is None:
        return []
    out: list[Path] = []
    for sub in ("pneumonia/images224/NORMAL", "pneumonia/images224/PNEUMONIA", "bodypart/hand",
                "lungs/images/ieee8023"):
        folder = shared / sub
        if folder.is_dir():
            out.extend(sorted(p for p in folder.iterdir()
                              if p.suffix.lower() in (".png", ".jpg", ".jpeg")
                              and p.stat().st_size < 120_000)[: limit // 4])
    return out


# ----------------------------------------------------------------------------------------------
# Seeds
# ----------------------------------------------------------------------------------------------


def _grey_pixels(images: list[Path], rng: np.random.Generator) -> np.ndarray:
    """A small uint8 grey image from a real radiograph (or noise when none is available)."""
    if images:
        img = cv2.imread(str(images[int(rng.integers(len(images)))]), cv2.IMREAD_GRAYSCALE)
        if img is not None:
            return cv2.resize(img, _SEED_SHAPE[::-1], interpolation=cv2.INTER_AREA)
    return rng.integers(0, 256, _SEED_SHAPE, dtype=np.uint8)


def _header_of(real: Path) -> Dataset | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(real, stop_before_pixels=True, force=True)
        except Exception:
            return None


def _small_seed(header: Dataset, grey: np.ndarray, ts: str) -> bytes:
    """The real header with small pixel data, re-encoded in ``ts``."""
    ds = Dataset()
    ds.update(header)
    for keyword in ("NumberOfFrames", "PlanarConfiguration", "PixelPaddingValue",
                    "RedPaletteColorLookupTableDescriptor", "LargestImagePixelValue",
                    "SmallestImagePixelValue"):
        if keyword in ds:
            delattr(ds, keyword)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = str(header.get("SOPClassUID", "1.2.840.10008.5.1.4.1.1.1"))
    meta.MediaStorageSOPInstanceUID = str(header.get("SOPInstanceUID", pydicom.uid.generate_uid()))
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
    photometric = str(header.get("PhotometricInterpretation", "MONOCHROME2"))
    ds.PhotometricInterpretation = photometric if photometric.startswith("MONO") else "MONOCHROME2"
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    ds.Rows, ds.Columns = grey.shape
    if ts == JPEGBaseline8Bit:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ok, buf = cv2.imencode(".jpg", grey, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        ds.PixelData = encapsulate([buf.tobytes()])
        ds["PixelData"].VR = "OB"
    else:
        bits = min(int(header.get("BitsStored", 12) or 12), 16)
        arr = (grey.astype(np.uint16) << max(bits - 8, 0)) if bits > 8 else grey.astype(np.uint16)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
        if ts in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.PixelData = arr.tobytes()
            plugin = {RLELossless: "pydicom", JPEGLSLossless: "pyjpegls"}.get(ts, "pylibjpeg")
            ds.compress(ts, arr, encoding_plugin=plugin)
        else:
            ds.PixelData = (arr.astype(">u2") if ts == ExplicitVRBigEndian else arr).tobytes()
            ds["PixelData"].VR = "OW"
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _seeds(shared: Path | None, images: list[Path], rng: np.random.Generator
           ) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes]], list[tuple[str, bytes]]]:
    """(DICOM seeds, full-size real DICOM files, image seeds) as (name, bytes)."""
    dicom: list[tuple[str, bytes]] = []
    full: list[tuple[str, bytes]] = []
    for real in real_dicom_files(shared):
        if real.stat().st_size <= _SMALL_REAL_BYTES:
            full.append((real.stem, real.read_bytes()))
        header = _header_of(real)
        if header is None:
            continue
        for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                   RLELossless, JPEGBaseline8Bit, JPEGLSLossless, JPEG2000Lossless):
            try:
                dicom.append((f"{real.stem}-{ts.name.split()[0]}",
                              _small_seed(header, _grey_pixels(images, rng), ts)))
            except Exception:
                continue  # a header pydicom cannot re-encode is not a seed
    if not dicom:  # no shared data: generated headers only
        header = Dataset()
        header.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        header.SOPInstanceUID = pydicom.uid.generate_uid()
        header.PatientName, header.PatientID, header.Modality = "Seed^Only", "SEED", "CR"
        header.StudyInstanceUID = pydicom.uid.generate_uid()
        header.SeriesInstanceUID = pydicom.uid.generate_uid()
        header.BitsStored = 12
        for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEGBaseline8Bit,
                   JPEGLSLossless, JPEG2000Lossless):
            dicom.append((f"generated-{ts.name.split()[0]}",
                          _small_seed(header, _grey_pixels(images, rng), ts)))
    img: list[tuple[str, bytes]] = []
    for path in images:
        data = path.read_bytes()
        img.append((path.stem, data))
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is not None:
            ok, buf = cv2.imencode(".png", cv2.resize(grey, (96, 80)))
            if ok:
                img.append((path.stem + "-png", buf.tobytes()))
    if not img:
        ok, buf = cv2.imencode(".png", rng.integers(0, 256, (80, 96), dtype=np.uint8))
        img.append(("generated-png", buf.tobytes()))
    return dicom, full, img


# ----------------------------------------------------------------------------------------------
# Mutations (bytes -> bytes)
# ----------------------------------------------------------------------------------------------


def _pixel_offset(data: bytes) -> int:
    pos = data.rfind(b"\xe0\x7f\x10\x00")
    return pos if pos > 0 else len(data) // 2


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, max(len(data), 1)))]


def _flip(data: bytes, lo: int, hi: int, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    hi = max(min(hi, len(buf)), lo + 1)
    for _ in range(int(rng.integers(1, 9))):
        pos = int(rng.integers(lo, hi))
        if pos < len(buf):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def _flip_header(data: bytes, rng: np.random.Generator) -> bytes:
    return _flip(data, 0, _pixel_offset(data) + 12, rng)


def _flip_pixels(data: bytes, rng: np.random.Generator) -> bytes:
    return _flip(data, _pixel_offset(data) + 12, len(data), rng)


def _element_positions(data: bytes) -> list[int]:
    out = []
    for tag in _TARGET_TAGS:
        pos = data.find(struct.pack("<HH", tag >> 16, tag & 0xFFFF), 128)
        if pos >= 0:
            out.append(pos)
    return out


def _wrong_vr_or_length(data: bytes, rng: np.random.Generator) -> bytes:
    positions = _element_positions(data)
    if not positions:
        return _flip_header(data, rng)
    pos = positions[int(rng.integers(len(positions)))]
    buf = bytearray(data)
    choice = int(rng.integers(3))
    if choice == 0:
        buf[pos + 4:pos + 6] = _VR_CHOICES[int(rng.integers(len(_VR_CHOICES)))]
    elif choice == 1:
        buf[pos + 6:pos + 8] = struct.pack("<H", int(rng.choice([0, 1, 0xFFFF, int(rng.integers(0, 65536))])))
    else:
        buf[pos + 8:pos + 12] = struct.pack("<I", int(rng.choice([0xFFFFFFFF, 0x7FFFFFFF,
                                                                   int(rng.integers(0, 2**32))])))
    return bytes(buf)


def _splice_ts(data: bytes, new: bytes | None) -> bytes:
    """Replace (0002,0010) Transfer Syntax UID's value, or drop the element (``None``)."""
    pos = data.find(b"\x02\x00\x10\x00UI", 128)
    if pos < 0:
        return data
    length = struct.unpack_from("<H", data, pos + 6)[0]
    end = pos + 8 + length
    if new is None:
        return data[:pos] + data[end:]
    value = new + (b"\x00" if len(new) % 2 else b"")
    return data[:pos + 6] + struct.pack("<H", len(value)) + value + data[end:]


def _lying_ts(data: bytes, rng: np.random.Generator) -> bytes:
    return _splice_ts(data, _TS_CHOICES[int(rng.integers(len(_TS_CHOICES)))])


def _missing_ts(data: bytes, rng: np.random.Generator) -> bytes:
    out = _splice_ts(data, None)
    if rng.random() < 0.3:  # and no preamble either
        out = out[128:] if out[128:132] == b"DICM" else out
    return out


def _us_value(data: bytes, tag: int, value: int) -> bytes | None:
    """Overwrite a US value in place (explicit or implicit VR little endian), else ``None``."""
    key = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    for follow in (b"US\x02\x00", b"\x02\x00\x00\x00"):
        pos = data.find(key + follow, 128)
        if pos >= 0:
            return data[:pos + 8] + struct.pack("<H", value) + data[pos + 10:]
    return None


def _gigapixels(data: bytes, rng: np.random.Generator) -> bytes:
    rows = int(rng.choice([65535, 50000, 40000, int(rng.integers(12000, 65536))]))
    cols = int(rng.choice([65535, 60000, int(rng.integers(12000, 65536))]))
    out = _us_value(data, 0x00280010, rows)
    out = _us_value(out, 0x00280011, cols) if out is not None else None
    if out is not None:
        return out
    with warnings.catch_warnings():  # big endian: let pydicom re-encode
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        ds.Rows, ds.Columns = rows, cols
        buf = io.BytesIO()
        ds.save_as(buf)
    return buf.getvalue()


def _pixel_length(data: bytes, rng: np.random.Generator) -> bytes:
    """Pixel data shorter or longer than (0028,0010) x (0028,0011) declares."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        pix = ds.PixelData
        if rng.random() < 0.5:
            cut = int(rng.integers(0, max(len(pix) - 1, 1)))
            ds.PixelData = pix[:cut - (cut % 2)]
        else:
            ds.PixelData = pix + bytes(2 * int(rng.integers(1, 5000)))
        if rng.random() < 0.3:
            ds.NumberOfFrames = int(rng.integers(2, 100000))
        buf = io.BytesIO()
        ds.save_as(buf)
    return buf.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb(rng: np.random.Generator) -> bytes:
    """A PNG whose IHDR claims a huge (or empty) image, with a little compressed data."""
    width = int(rng.choice([60000, 30000, 100000, 0, int(rng.integers(12000, 70000))]))
    height = int(rng.choice([60000, 30000, 1, int(rng.integers(12000, 70000))]))
    colour = int(rng.choice([0, 2, 6]))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    comp = zlib.compressobj(9)
    idat = comp.compress(bytes(min(width * 4 + 1, 1 << 20) * 8)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _jpeg_dims(data: bytes, rng: np.random.Generator) -> bytes:
    """A real JPEG whose SOF marker claims other dimensions."""
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        pos = data.find(marker)
        if pos > 0:
            h = int(rng.choice([65535, 0, 1, int(rng.integers(2, 65536))]))
            w = int(rng.choice([65535, 0, int(rng.integers(2, 65536))]))
            return data[:pos + 5] + struct.pack(">HH", h, w) + data[pos + 9:]
    return _truncate(data, rng)


def _png_dims(data: bytes, rng: np.random.Generator) -> bytes:
    if not data.startswith(b"\x89PNG"):
        return _jpeg_dims(data, rng)
    w = int(rng.choice([60000, 0, int(rng.integers(1, 70000))]))
    h = int(rng.choice([60000, 0, int(rng.integers(1, 70000))]))
    body = struct.pack(">II", w, h) + data[24:29]
    fixed_crc = rng.random() < 0.7
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + body)) if fixed_crc else data[29:33]
    return data[:16] + body + crc + data[33:]


DicomMutation = Callable[[bytes, np.random.Generator], bytes]
# --- round two (issue 15): what crashed, hung or ate memory in the held-out corpus ---------

def _meta_end(data: bytes) -> int | None:
    if data[128:132] != b"DICM" or len(data) < 144:
        return None
    return 144 + struct.unpack_from("<I", data, 140)[0]


def _codestream_claim(data: bytes, rng: np.random.Generator) -> bytes:
    """A compressed frame whose own header claims another size than Rows/Columns (a 666-byte
    JPEG-LS claiming 65000 x 65000 aborted the process inside the decoder)."""
    buf = bytearray(data)
    rows = int(rng.choice([65000, 20000, 1, int(rng.integers(2, 65536))]))
    cols = int(rng.choice([65000, 20000, 1, int(rng.integers(2, 65536))]))
    start = _pixel_offset(data)
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc3", b"\xff\xf7"):
        at = data.find(marker, start)
        if at > 0 and at + 9 <= len(buf):
            buf[at + 5:at + 9] = struct.pack(">HH", rows, cols)
            return bytes(buf)
    at = data.find(b"\xff\x4f\xff\x51", start)
    if at > 0 and at + 16 <= len(buf):
        buf[at + 8:at + 16] = struct.pack(">II", cols, rows)
        return bytes(buf)
    return _gigapixels(data, rng)  # an uncompressed seed: the header-claim variant instead


def _deep_nesting(data: bytes, rng: np.random.Generator) -> bytes:
    """A sequence nested hundreds deep right after the file meta (RecursionError escaped the
    fast header reader and lost the whole folder)."""
    end = _meta_end(data)
    if end is None:
        return data
    depth = int(rng.integers(40, 1200))
    if rng.random() < 0.5:  # undefined lengths
        body = b""
        for _ in range(depth):
            body = (struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
                    + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + body
                    + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    else:  # defined lengths
        body = b""
        for _ in range(depth):
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
            body = struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, len(item)) + item
    return data[:end] + body + data[end:]


def _deflated(data: bytes, rng: np.random.Generator) -> bytes:
    """Deflated Explicit VR Little Endian: a deflate bomb of zeros, garbage, or the real data
    set deflated (1.5 GB inflated took 3.2 GB; deflated zeros over a minute)."""
    import zlib

    end = _meta_end(data)
    if end is None:
        return data
    head = _splice_ts(data[:end], b"1.2.840.10008.1.2.1.99")
    head = head[:140] + struct.pack("<I", len(head) - 144) + head[144:]
    comp = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    kind = int(rng.integers(3))
    if kind == 0:
        block = bytes(1 << 22)
        body = b"".join(comp.compress(block) for _ in range(int(rng.integers(8, 200)))) + comp.flush()
    elif kind == 1:
        body = rng.bytes(int(rng.integers(16, 4096)))
    else:
        body = comp.compress(data[end:]) + comp.flush()
    return head + body


def _zero_filled(data: bytes, rng: np.random.Generator) -> bytes:
    """What a pre-allocated download looks like (read whole, 64 MB took 18 s)."""
    return bytes(int(rng.integers(1, 8)) * 1024**2)


_DICOM_MUTATIONS: dict[str, DicomMutation] = {
    "codestream-claim": _codestream_claim,
    "deep-nesting": _deep_nesting,
    "deflated": _deflated,
    "zero-filled": _zero_filled,
    "truncated": _truncate,
    "flipped-header": _flip_header,
    "flipped-pixels": _flip_pixels,
    "wrong-vr-length": _wrong_vr_or_length,
    "lying-ts": _lying_ts,
    "missing-ts": _missing_ts,
    "gigapixel-claim": _gigapixels,
    "pixel-length": _pixel_length,
}
_FULL_MUTATIONS = ("truncated", "flipped-header", "wrong-vr-length", "lying-ts", "gigapixel-claim")
_IMAGE_MUTATIONS: dict[str, DicomMutation] = {
    "image-truncated": _truncate,
    "image-flipped": lambda d, r: _flip(d, 0, len(d), r),
    "image-flipped-header": lambda d, r: _flip(d, 0, min(len(d), 64), r),
    "image-dims": _png_dims,
}


# ----------------------------------------------------------------------------------------------
# Containers: zips and folders
# ----------------------------------------------------------------------------------------------


def _zip_bytes(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buf.getvalue()


def _zip_case(i: int, seed: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    kind = i % 8
    if kind == 0:
        name = ["../../evil.dcm", "/etc/evil.dcm", "a/../../evil.dcm", "C:\\evil.dcm",
                "..\\..\\evil.dcm"][int(rng.integers(5))]
        return "zip-traversal", _zip_bytes([(name, seed), ("ok.dcm", seed)])
    if kind == 1:
        inner = _zip_bytes([("inner.dcm", seed)])
        for _ in range(int(rng.integers(1, 4))):
            inner = _zip_bytes([("nested.zip", inner)])
        return "zip-nested", inner
    if kind == 2:
        # ~1000:1 deflate of zeros: refused by the ratio guard, never inflated.
        return "zip-ratio", _zip_bytes([("zeros.dcm", bytes(int(rng.integers(4, 12)) << 20))])
    if kind == 3:
        return "zip-truncated", _truncate(_zip_bytes([("a.dcm", seed), ("b.dcm", seed)]), rng)
    if kind == 4:
        data = bytearray(_zip_bytes([("a.dcm", seed)], zipfile.ZIP_STORED))
        pos = 30 + len("a.dcm") + int(rng.integers(0, len(seed)))
        data[pos] ^= 0xFF  # CRC mismatch on read
        return "zip-bad-crc", bytes(data)
    if kind == 5:
        members = [(f"m{j:03d}.dcm", _flip_header(seed, rng) if j % 3 else seed)
                   for j in range(int(rng.integers(3, 12)))]
        return "zip-mixed-members", _zip_bytes(members)
    if kind == 6:
        return "zip-flipped", _flip(_zip_bytes([("a.dcm", seed)]), 0, 200, rng)
    return "zip-lying-sizes", _lying_zip_sizes(_zip_bytes([("a.dcm", seed)], zipfile.ZIP_STORED), rng)


def _lying_zip_sizes(data: bytes, rng: np.random.Generator) -> bytes:
    """Central directory claims another uncompressed size than the member has."""
    buf = bytearray(data)
    pos = buf.find(b"PK\x01\x02")
    if pos >= 0:
        buf[pos + 24:pos + 28] = struct.pack("<I", int(rng.choice([0, 1, 0xFFFFFFFF, 3 << 30])))
    return bytes(buf)


def _symlink_folder(root: Path, seed: bytes) -> Path:
    folder = root
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "image.dcm").write_bytes(seed)
    os.symlink(folder, folder / "sub" / "loop")  # folder -> ancestor
    os.symlink("self", folder / "self")  # link to itself
    os.symlink(folder / "sub", folder / "sub" / "again")
    os.symlink(folder / "a", folder / "b")
    os.symlink(folder / "b", folder / "a")  # a <-> b
    return folder


def _dicomdir_case(folder: Path, seeds: list[bytes], rng: np.random.Generator) -> Path | None:
    """A DICOMDIR over real-header seeds, then damaged: looping offsets, a record naming the
    DICOMDIR itself, a missing file, an unsafe file ID, or flipped bytes (pydicom's FileSet
    looped for ever on the first)."""
    from pydicom.fileset import FileSet

    try:
        fs = FileSet()
        for i, data in enumerate(seeds):
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            ds.PatientID = ds.get("PatientID") or f"P{i}"
            ds.StudyInstanceUID = ds.get("StudyInstanceUID") or pydicom.uid.generate_uid()
            ds.SeriesInstanceUID = ds.get("SeriesInstanceUID") or pydicom.uid.generate_uid()
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            fs.add(ds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fs.write(folder)
    except Exception:
        return None
    path = folder / "DICOMDIR"
    ds = pydicom.dcmread(path)
    records = list(ds.DirectoryRecordSequence)
    kind = int(rng.integers(5))
    if kind == 0:
        first = ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity
        for r in records:
            r.OffsetOfTheNextDirectoryRecord = first
            r.OffsetOfReferencedLowerLevelDirectoryEntity = first
    elif kind == 1:
        next(r for r in records if r.get("ReferencedFileID")).ReferencedFileID = ["DICOMDIR"]
    elif kind == 2:
        target = next(r for r in records if r.get("ReferencedFileID"))
        (folder.joinpath(*target.ReferencedFileID)).unlink(missing_ok=True)
    elif kind == 3:
        next(r for r in records if r.get("ReferencedFileID")).ReferencedFileID = ["..", "..", "X"]
    ds.save_as(path)
    if kind == 4:
        path.write_bytes(_flip(path.read_bytes(), 132, len(path.read_bytes()), rng))
    return path


# ----------------------------------------------------------------------------------------------
# The corpus
# ----------------------------------------------------------------------------------------------


def build_corpus(root: Path, shared: Path | None, n: int = 2000, seed: int = 20261121) -> list[Item]:
    """Write ``n`` (at least) malformed inputs under ``root``; returns them in a stable order.

    Families, in proportion: DICOM mutations of re-encoded real headers (~60 %), mutations of
    the smallest full-size real files (~5 %), PNG/JPEG mutations and bombs (~20 %), zips
    (~8 %), zero-length and non-DICOM files, and folders with symlink loops.
    """
    rng = np.random.default_rng(seed)
    images = real_image_files(shared)
    dicom_seeds, full_seeds, image_seeds = _seeds(shared, images, rng)
    root.mkdir(parents=True, exist_ok=True)
    items: list[Item] = []

    def put(family: str, name: str, data: bytes) -> None:
        path = root / f"{len(items):05d}-{family}-{name}"
        path.write_bytes(data)
        items.append(Item(path, family))

    quotas = {"dicom": int(n * 0.60), "full": int(n * 0.05), "image": int(n * 0.17),
              "bomb": int(n * 0.03), "zip": int(n * 0.08)}
    names = list(_DICOM_MUTATIONS)
    for i in range(quotas["dicom"]):
        sname, data = dicom_seeds[int(rng.integers(len(dicom_seeds)))]
        family = names[i % len(names)]
        put(family, f"{sname}.dcm", _DICOM_MUTATIONS[family](data, rng))
    for i in range(quotas["full"] if full_seeds else 0):
        sname, data = full_seeds[i % len(full_seeds)]
        family = _FULL_MUTATIONS[i % len(_FULL_MUTATIONS)]
        put(f"real-{family}", f"{sname}.dcm", _DICOM_MUTATIONS[family](data, rng))
    inames = list(_IMAGE_MUTATIONS)
    for i in range(quotas["image"]):
        sname, data = image_seeds[int(rng.integers(len(image_seeds)))]
        family = inames[i % len(inames)]
        ext = ".png" if data.startswith(b"\x89PNG") else ".jpg"
        put(family, f"{sname}{ext}", _IMAGE_MUTATIONS[family](data, rng))
    for _ in range(quotas["bomb"]):
        put("png-bomb", "bomb.png", _png_bomb(rng))
    for i in range(quotas["zip"]):
        family, data = _zip_case(i, dicom_seeds[i % len(dicom_seeds)][1], rng)
        put(family, "archive.zip", data)
    for _ in range(10):
        picked = [dicom_seeds[int(rng.integers(len(dicom_seeds)))][1] for _ in range(2)]
        made = _dicomdir_case(root / f"{len(items):05d}-dicomdir", picked, rng)
        if made is not None:
            items.append(Item(made, "dicomdir"))
    for i in range(6):
        folder = root / f"{len(items):05d}-symlink-loop"
        items.append(Item(_symlink_folder(folder, dicom_seeds[i % len(dicom_seeds)][1]),
                          "symlink-loop"))
    fillers: list[tuple[str, str, Callable[[], bytes]]] = [
        ("zero-length", "empty.dcm", lambda: b""),
        ("zero-length", "empty.png", lambda: b""),
        ("not-dicom", "notes.dcm", lambda: b"patient notes, not an image\n" * 20),
        ("not-dicom", "random.dcm", lambda: rng.bytes(int(rng.integers(1, 5000)))),
        ("not-dicom", "preamble-only.dcm", lambda: bytes(128) + b"DICM"),
        ("not-dicom", "random-ext.jpg", lambda: rng.bytes(int(rng.integers(1, 3000)))),
    ]
    i = 0
    while len(items) < n:
        family, name, make = fillers[i % len(fillers)]
        put(family, name, make())
        i += 1
    return items
