"""Synthetic radiograph-like DICOM files for the benchmarks (no real patient data).

A smooth 12-bit "body" with bright elliptical "bones", darker "lungs", a collimation border and
photon noise: enough structure that compressors behave as on real CR images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    UID,
    generate_uid,
)

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
ENCODINGS = {
    "native": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "j2k": JPEG2000Lossless,
    "jls": JPEGLSLossless,
}
_ = CTImageStorage


def radiograph_like(rows: int, cols: int, seed: int = 0, bits: int = 12) -> np.ndarray:
    """A uint16 image with values in ``[0, 2**bits)`` that looks vaguely like a chest film."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y /= rows
    x /= cols
    img = 0.55 + 0.25 * np.exp(-((x - 0.5) ** 2) / 0.08)  # soft tissue
    for cx in (0.32, 0.68):  # lungs
        img -= 0.25 * np.exp(-(((x - cx) / 0.13) ** 2 + ((y - 0.45) / 0.25) ** 2))
    img += 0.3 * np.exp(-(((x - 0.5) / 0.04) ** 2))  # spine
    for k in range(8):  # ribs
        yk = 0.25 + 0.07 * k + 0.01 * rng.standard_normal()
        img += 0.08 * np.exp(-(((y - yk - 0.1 * (x - 0.5) ** 2) / 0.012) ** 2))
    img[:, : cols // 20] = 1.0  # collimation
    img[:, -cols // 20:] = 1.0
    top = 2**bits - 1
    img = np.clip(img, 0, 1) * (top * 0.9)
    img += rng.normal(0, top * 0.002, img.shape).astype(np.float32)
    return np.clip(img, 0, top).astype(np.uint16)


def make_dataset(pixels: np.ndarray, *, patient: int = 0, study: int = 0, series: int = 0,
                 instance: int = 1, bits: int = 12, study_uid: str | None = None,
                 series_uid: str | None = None) -> Dataset:
    """A CR dataset around ``pixels`` (MONOCHROME2, Explicit VR Little Endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = f"Bench^P{patient:04d}"
    ds.PatientID = f"P{patient:04d}"
    ds.StudyInstanceUID = study_uid or f"1.2.826.0.1.3680043.10.1.{patient}.{study}"
    ds.SeriesInstanceUID = series_uid or f"1.2.826.0.1.3680043.10.1.{patient}.{study}.{series}"
    ds.StudyDate = "20240101"
    ds.StudyDescription = "BENCH"
    ds.SeriesDescription = "PA"
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.SeriesNumber = series + 1
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2 ** (bits - 1)
    ds.WindowWidth = 2**bits
    ds.PixelSpacing = [0.15, 0.15]
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def encoded_bytes(pixels: np.ndarray, encoding: str, **kw: object) -> bytes:
    """One Part 10 file's bytes for ``pixels`` in an encoding of :data:`ENCODINGS`."""
    import io

    ds = make_dataset(pixels, **kw)  # type: ignore[arg-type]
    ts = ENCODINGS[encoding]
    if ts != ExplicitVRLittleEndian:
        ds.compress(ts, pixels)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_folder(root: Path, count: int, rows: int, cols: int, encodings: list[str],
                 distinct: int = 6) -> list[Path]:
    """``count`` files cycling through ``encodings``; ``distinct`` images per encoding are
    encoded once and their bytes re-used (compression is slow), each file a separate path."""
    root.mkdir(parents=True, exist_ok=True)
    cache: dict[tuple[str, int], bytes] = {}
    paths = []
    for i in range(count):
        enc = encodings[i % len(encodings)]
        key = (enc, (i // len(encodings)) % distinct)
        if key not in cache:
            cache[key] = encoded_bytes(radiograph_like(rows, cols, seed=key[1]), enc)
        path = root / f"img{i:05d}_{enc}.dcm"
        path.write_bytes(cache[key])
        paths.append(path)
    return paths


def folder_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


__all__ = ["ENCODINGS", "encoded_bytes", "make_dataset", "radiograph_like", "write_folder",
           "folder_size", "os"]
