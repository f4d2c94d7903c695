"""DICOM attributes -> value objects: modality LUT, VOI windows and tables, pixel spacing.

Used by :mod:`viewer.dicom.load`. Each function reads the attributes it names from a pydicom
data set; damaged optional attributes are skipped by the caller.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from viewer.core.radiograph import VOI, ModalityLUT

__all__ = [
    "as_list", "lut_from_item", "modality_lut", "patient_age_years", "pixel_spacing", "study_date",
    "to_rgb_u8", "vois",
]


def lut_from_item(item: Dataset, signed: bool) -> tuple[np.ndarray, int, int]:
    """(table, first mapped, bits) from an item with (0028,3002) LUT Descriptor/(0028,3006) LUT Data."""
    desc = [int(v) for v in item.LUTDescriptor]
    n = desc[0] or 65536
    first = desc[1]
    if signed and first > 32767:
        first -= 65536
    bits = desc[2] if len(desc) > 2 and desc[2] else 16
    raw: Any = item.LUTData
    if isinstance(raw, (bytes, bytearray)):
        dtype = "<u1" if bits <= 8 and len(raw) == n else "<u2"
        table = np.frombuffer(raw, dtype=dtype)
    else:
        table = np.asarray(raw if isinstance(raw, (list, tuple, pydicom.multival.MultiValue))
                           else [raw], dtype=np.int64)
    table = np.asarray(table[:n], dtype=np.float32)
    return table, int(first), int(bits)


def modality_lut(ds: Dataset, signed: bool) -> ModalityLUT:
    """(0028,3000) Modality LUT Sequence, else (0028,1053) Rescale Slope / (0028,1052) Rescale
    Intercept / (0028,1054) Rescale Type (identity when absent or not finite)."""
    seq = ds.get("ModalityLUTSequence")
    if seq:
        try:
            table, first, _bits = lut_from_item(seq[0], signed)
            return ModalityLUT(lut=table, first_mapped=first, units=str(seq[0].get("ModalityLUTType", "")))
        except Exception:  # fall back to rescale when the table is malformed
            pass
    try:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError):
        slope, intercept = 1.0, 0.0
    if not np.isfinite(slope) or slope == 0:
        slope = 1.0
    return ModalityLUT(slope=slope, intercept=intercept if np.isfinite(intercept) else 0.0,
                       units=str(ds.get("RescaleType", "") or ""))


def as_list(value: Any) -> list[Any]:
    """A single value or a multi-value as a list (``[]`` for ``None``)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return list(value)
    return [value]


def vois(ds: Dataset, signed: bool) -> tuple[VOI, ...]:
    """Every VOI in the file: (0028,3010) VOI LUT Sequence items first, then windows."""
    out: list[VOI] = []
    for i, item in enumerate(ds.get("VOILUTSequence") or []):
        try:
            table, first, bits = lut_from_item(item, signed)
        except Exception:
            continue
        label = str(item.get("LUTExplanation", "") or f"VOI LUT {i + 1}")
        out.append(VOI(explanation=label, lut=table, first_mapped=first, bits=bits))
    centers = as_list(ds.get("WindowCenter"))
    widths = as_list(ds.get("WindowWidth"))
    labels = as_list(ds.get("WindowCenterWidthExplanation"))
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    for i, (c, w) in enumerate(zip(centers, widths)):
        try:
            cf, wf = float(c), float(w)
        except (TypeError, ValueError):
            continue
        label = str(labels[i]).strip() if i < len(labels) and str(labels[i]).strip() else f"Window {i + 1}"
        # The numbers are shown beside the name (fields, tooltip), not repeated in it.
        out.append(VOI(explanation=label, center=cf, width=wf, function=function))
    return tuple(out)


def pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, Any]:
    """(row, column) spacing in mm and the keyword it came from: (0028,0030) Pixel Spacing, else
    (0018,1164) Imager Pixel Spacing, else (0018,2010) Nominal Scanned Pixel Spacing."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        value = as_list(ds.get(keyword))
        if len(value) >= 2:
            try:
                row_sp, col_sp = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if row_sp > 0 and col_sp > 0:
                return (row_sp, col_sp), keyword
    return None, None


def to_rgb_u8(arr: np.ndarray, bits: int) -> np.ndarray:
    """Colour samples of ``bits`` bits -> uint8 (unchanged when already uint8)."""
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    top = float(arr.max()) if arr.size else 1.0
    scale = 255.0 / max(float(2 ** bits - 1) if bits else top, 1.0)
    return np.asarray(np.clip(arr.astype(np.float32) * scale + 0.5, 0, 255).astype(np.uint8))


_AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def patient_age_years(ds: Dataset) -> float | None:
    """Age in years at the study: (0010,1010) Patient's Age, else Study/Content date minus
    (0010,0030) Patient's Birth Date; ``None`` when neither is present and valid.

    Patient's Age is an Age String (VR AS): three digits and a unit, D, W, M or Y.
    """
    text = str(ds.get("PatientAge", "") or "").strip().upper()
    if len(text) == 4 and text[:3].isdigit() and text[3] in _AGE_UNITS:
        return int(text[:3]) * _AGE_UNITS[text[3]]
    birth = _dicom_date(ds.get("PatientBirthDate"))
    when = study_date(ds)
    if birth is None or when is None or when < birth:
        return None
    return (when - birth).days / 365.25


def study_date(ds: Dataset) -> date | None:
    """The date the image was taken: the first valid of (0008,0020) Study Date, (0008,0022)
    Acquisition Date, (0008,0023) Content Date and (0008,0021) Series Date; ``None`` if none."""
    return next((d for d in (_dicom_date(ds.get(k)) for k in
                             ("StudyDate", "AcquisitionDate", "ContentDate", "SeriesDate"))
                 if d is not None), None)


def _dicom_date(value: Any) -> date | None:
    text = str(value or "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None
