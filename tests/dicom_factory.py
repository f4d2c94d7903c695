"""Small DICOM files generated for tests (never real patient data).

:func:`write_dicom` builds a valid Part 10 file from a numpy array with the attributes the display
pipeline reads; :func:`write_sr` and :func:`write_rtstruct` make non-image objects;
:func:`write_truncated` cuts a file short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    UID,
    generate_uid,
)

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")
SC_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
RT_STRUCT = UID("1.2.840.10008.5.1.4.1.1.481.3")


def _base(sop_class: UID, ts: UID, **header: Any) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = header.pop("SOPInstanceUID", generate_uid())
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = header.pop("PatientName", "Test^Patient")
    ds.PatientID = header.pop("PatientID", "TEST001")
    ds.StudyInstanceUID = header.pop("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = header.pop("SeriesInstanceUID", generate_uid())
    ds.StudyDate = header.pop("StudyDate", "20240102")
    ds.Modality = header.pop("Modality", "CR")
    ds.SeriesNumber = header.pop("SeriesNumber", 1)
    ds.InstanceNumber = header.pop("InstanceNumber", 1)
    for key, value in header.items():
        setattr(ds, key, value)
    return ds


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str | None = None,
    bits_stored: int | None = None,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    sop_class: UID = CR_STORAGE,
    **header: Any,
) -> Path:
    """Write ``pixels`` ((rows, cols), (frames, rows, cols) or (..., 3) RGB) as a DICOM file.

    ``header`` sets any further attributes by keyword (WindowCenter, RescaleSlope,
    VOILUTSequence, PixelSpacing, PatientName, ...).
    """
    arr = np.asarray(pixels)
    colour = arr.shape[-1] == 3 and arr.ndim in (3, 4) and photometric in (None, "RGB", "YBR_FULL")
    frames = arr.shape[0] if (arr.ndim == 3 and not colour) or arr.ndim == 4 else 1
    ds = _base(sop_class, transfer_syntax, **header)
    ds.Rows, ds.Columns = (arr.shape[-3], arr.shape[-2]) if colour else arr.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if colour else "MONOCHROME2")
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    order = ">" if transfer_syntax == ExplicitVRBigEndian else "<"
    ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(order))).tobytes()
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless, arr, encoding_plugin="pydicom")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def lut_item(table: Sequence[int], first_mapped: int, bits: int, explanation: str = "") -> Dataset:
    """A (0028,3010) VOI LUT Sequence / (0028,3000) Modality LUT Sequence item."""
    item = Dataset()
    item.LUTDescriptor = [len(table) if len(table) < 65536 else 0, first_mapped, bits]
    item["LUTDescriptor"].VR = "US"
    item.LUTData = [int(v) for v in table]
    item["LUTData"].VR = "US"
    if explanation:
        item.LUTExplanation = explanation
    return item


def sequence(*items: Dataset) -> DicomSequence:
    return DicomSequence(list(items))


def write_sr(path: Path) -> Path:
    """A Basic Text SR object (no pixels)."""
    ds = _base(BASIC_TEXT_SR, ExplicitVRLittleEndian, Modality="SR")
    ds.ValueType = "CONTAINER"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_rtstruct(path: Path) -> Path:
    """An RT Structure Set object (no pixels)."""
    ds = _base(RT_STRUCT, ImplicitVRLittleEndian, Modality="RTSTRUCT")
    ds.StructureSetLabel = "test"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_truncated(src: Path, dst: Path, keep: int) -> Path:
    """Copy the first ``keep`` bytes of ``src`` to ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(Path(src).read_bytes()[:keep])
    return dst
