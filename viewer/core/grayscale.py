"""Grayscale transformation steps 1-4, one pure numpy function per step.

DICOM PS3.4 N.2.1 "Grayscale Transformations": the modality transform
(:func:`modality_values`), the VOI transform (:func:`apply_voi`: a (0028,3010) VOI LUT Sequence
table or a (0028,1050) Window Center / (0028,1051) Window Width with (0028,1056) VOI LUT
Function), MONOCHROME1 inversion last (:func:`invert_if_monochrome1`) and 8-bit output
(:func:`to_u8`). :mod:`viewer.core.windowing` composes them into the display pipeline, chooses
default windows and derives fast display levels; it re-exports these names.
"""

from __future__ import annotations

import numpy as np

from viewer.core.radiograph import VOI, ModalityLUT, Radiograph

__all__ = [
    "apply_voi",
    "apply_voi_lut",
    "apply_window",
    "invert_if_monochrome1",
    "modality_values",
    "to_u8",
    "window_bounds",
]


# --------------------------------------------------------------------------------------------
# Step 1: modality transform
# --------------------------------------------------------------------------------------------


def _apply_modality(stored: np.ndarray, mlut: ModalityLUT) -> np.ndarray:
    """Apply a modality transform to any array of stored values (float32 result)."""
    if mlut.lut is not None and len(mlut.lut) > 0:
        table = np.asarray(mlut.lut, dtype=np.float32)
        idx = stored.astype(np.int64, copy=False) - int(mlut.first_mapped)
        np.clip(idx, 0, len(table) - 1, out=idx)
        return table[idx]
    out = stored.astype(np.float32, copy=True)
    if mlut.slope != 1.0:
        out *= np.float32(mlut.slope)
    if mlut.intercept != 0.0:
        out += np.float32(mlut.intercept)
    return out


def modality_values(rg: Radiograph) -> np.ndarray:
    """Stored values -> modality values (float32), same shape as ``rg.pixels``.

    Uses the (0028,3000) Modality LUT Sequence when present (values below the first mapped
    entry take the first table value, values above the last take the last, PS3.3 C.11.1.1),
    otherwise ``stored * (0028,1053) Rescale Slope + (0028,1052) Rescale Intercept``.
    Colour images are returned as float32 unchanged (the modality transform is greyscale only).
    """
    if rg.is_colour:
        return rg.pixels.astype(np.float32)
    return _apply_modality(rg.pixels, rg.modality_lut)


# --------------------------------------------------------------------------------------------
# Step 2: VOI transform
# --------------------------------------------------------------------------------------------


def window_bounds(center: float, width: float, function: str = "LINEAR") -> tuple[float, float]:
    """Input values mapped to 0 and to 1 by a window (the "levels" of the window).

    LINEAR: ``c - 0.5 -/+ (w - 1) / 2`` (PS3.3 C.11.2.1.2.1); LINEAR_EXACT: ``c -/+ w / 2``
    (C.11.2.1.3.2); SIGMOID: the values where the curve reaches ~0.12 and ~0.88 (``c -/+ w / 2``).
    """
    fn = (function or "LINEAR").upper()
    if fn == "LINEAR":
        half = (max(float(width), 1.0) - 1.0) / 2.0
        return float(center) - 0.5 - half, float(center) - 0.5 + half
    half = float(width) / 2.0
    return float(center) - half, float(center) + half


def apply_window(
    values: np.ndarray, center: float, width: float, function: str = "LINEAR"
) -> np.ndarray:
    """Apply a (0028,1050) Window Center / (0028,1051) Window Width to float32 in [0, 1].

    Formulas of DICOM PS3.3 C.11.2.1.2 with ``y_min = 0`` and ``y_max = 1``:

    * LINEAR (width >= 1): ``x <= c - 0.5 - (w-1)/2 -> 0``, ``x > c - 0.5 + (w-1)/2 -> 1``,
      else ``((x - (c - 0.5)) / (w - 1) + 0.5)``. A width of 1 is a threshold at ``c - 0.5``.
    * LINEAR_EXACT (width > 0): ``x <= c - w/2 -> 0``, ``x > c + w/2 -> 1``, else
      ``(x - c) / w + 0.5``.
    * SIGMOID (width > 0): ``1 / (1 + exp(-4 (x - c) / w))``.

    Parameters
    ----------
    values
        Modality values (any real dtype).
    center, width
        The window; ``width`` must be >= 1 for LINEAR and > 0 otherwise.
    function
        (0028,1056) VOI LUT Function: "LINEAR" (default), "LINEAR_EXACT" or "SIGMOID".
    """
    fn = (function or "LINEAR").upper()
    c = float(center)
    w = float(width)
    x = np.asarray(values, dtype=np.float32)
    if fn == "SIGMOID":
        if w <= 0:
            raise ValueError(f"SIGMOID window width must be > 0, got {w}")
        arg = x * np.float32(-4.0 / w)
        arg += np.float32(4.0 * c / w)
        np.clip(arg, -80.0, 80.0, out=arg)  # float32 exp overflows past ~88
        out = np.exp(arg)
        out += np.float32(1.0)
        np.reciprocal(out, out=out)
        return np.asarray(out)
    if fn == "LINEAR_EXACT":
        if w <= 0:
            raise ValueError(f"LINEAR_EXACT window width must be > 0, got {w}")
        scale, offset = 1.0 / w, 0.5 - c / w
    elif fn == "LINEAR":
        if w < 1:
            raise ValueError(f"LINEAR window width must be >= 1, got {w}")
        if w == 1:
            return (x > np.float32(c - 0.5)).astype(np.float32)
        scale = 1.0 / (w - 1.0)
        offset = 0.5 - (c - 0.5) * scale
    else:
        raise ValueError(f"unknown VOI LUT Function {function!r}")
    out = x * np.float32(scale)
    out += np.float32(offset)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def _lut_max(voi: VOI) -> float:
    """Output full scale of a VOI LUT: ``2**bits - 1`` from (0028,3002) LUT Descriptor.

    Some vendors declare 16 bits and fill 12; when the table's maximum is far below the declared
    scale, the scale is taken from the bit length of the maximum instead (otherwise the image
    would show nearly black).
    """
    table = np.asarray(voi.lut)
    declared = float(2 ** int(voi.bits) - 1)
    top = int(table.max()) if table.size else 0
    if 0 < top < 2 ** max(int(voi.bits) - 4, 1):
        return float(2 ** int(top).bit_length() - 1)
    return declared


def apply_voi_lut(values: np.ndarray, voi: VOI) -> np.ndarray:
    """Apply a (0028,3010) VOI LUT Sequence table, normalised to float32 in [0, 1].

    Values below (0028,3002) LUT Descriptor "first mapped" take the first entry, values past
    the table take the last entry (PS3.3 C.11.2.1.1). Non-integer inputs are rounded.
    """
    if voi.lut is None:
        raise ValueError("VOI has no LUT table")
    table = np.asarray(voi.lut, dtype=np.float32) / np.float32(_lut_max(voi))
    x = np.asarray(values)
    if x.dtype.kind == "f":
        idx = np.rint(x).astype(np.int64)
    else:
        idx = x.astype(np.int64)
    idx -= int(voi.first_mapped)
    np.clip(idx, 0, len(table) - 1, out=idx)
    out = table[idx]
    np.clip(out, 0.0, 1.0, out=out)
    return np.asarray(out)


def apply_voi(values: np.ndarray, voi: VOI) -> np.ndarray:
    """Apply one :class:`VOI` (table or window) to modality values, float32 in [0, 1]."""
    if voi.lut is not None:
        return apply_voi_lut(values, voi)
    if voi.center is None or voi.width is None:
        raise ValueError(f"VOI {voi.explanation!r} has neither a LUT nor a window")
    return apply_window(values, voi.center, voi.width, voi.function)


# --------------------------------------------------------------------------------------------
# Step 3 and 4: MONOCHROME1 inversion, 8-bit output
# --------------------------------------------------------------------------------------------


def invert_if_monochrome1(unit: np.ndarray, rg: Radiograph) -> np.ndarray:
    """``1 - unit`` for (0028,0004) MONOCHROME1, unchanged otherwise. Always the LAST step."""
    if rg.is_inverted:
        return np.float32(1.0) - unit
    return unit


def to_u8(unit: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with round-half-up (0.5/255 -> 1)."""
    scaled = np.asarray(unit, dtype=np.float32) * np.float32(255.0)
    scaled += np.float32(0.5)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return scaled.astype(np.uint8)
