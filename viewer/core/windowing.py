"""The greyscale display pipeline, one pure numpy function per step.

Order (DICOM PS3.4 N.2.1 "Grayscale Transformations", and the trap in FIELD-NOTES):

1. :func:`modality_values`: stored values -> (0028,3000) Modality LUT Sequence, or
   (0028,1053) Rescale Slope and (0028,1052) Rescale Intercept.
2. :func:`apply_voi`: (0028,3010) VOI LUT Sequence table (:func:`apply_voi_lut`), or
   (0028,1050) Window Center / (0028,1051) Window Width with (0028,1056) VOI LUT Function
   (:func:`apply_window`), to float32 in [0, 1].
3. :func:`invert_if_monochrome1`: (0028,0004) Photometric Interpretation MONOCHROME1 is inverted
   *last*, so that bone is bright.
4. :func:`to_u8`: [0, 1] -> uint8 display values.

:func:`display_image` runs the whole chain. For integer pixels it evaluates the chain once per
possible stored value (at most 65,536 entries) and indexes that table, which is identical to the
element-wise chain and several times faster on a 5-megapixel radiograph. :func:`display_levels`
gives the UI a fast path for window/level drags: levels in the space of :func:`level_image`,
which an image widget can apply without recomputing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from viewer.core.radiograph import VOI, ModalityLUT, Radiograph

__all__ = [
    "Levels",
    "apply_voi",
    "apply_voi_lut",
    "apply_window",
    "auto_window",
    "data_range",
    "default_voi",
    "display_image",
    "display_levels",
    "display_lut",
    "histogram",
    "invert_if_monochrome1",
    "level_image",
    "modality_values",
    "sample",
    "sample_values",
    "to_u8",
    "validate_voi",
    "window_bounds",
]

# A file window wider than this many times the data range cannot be meant for this image.
_ABSURD_WIDTH_RATIO = 8.0
_SAMPLE_TARGET = 250_000


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
        return out
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
    return out


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


# --------------------------------------------------------------------------------------------
# Automatic window, validation, default choice
# --------------------------------------------------------------------------------------------


def sample(values: np.ndarray, target: int = _SAMPLE_TARGET) -> np.ndarray:
    """A regular sub-grid of a 2-D array with about ``target`` elements (a view, no copy)."""
    arr = np.asarray(values)
    if arr.size <= target or arr.ndim < 2:
        return arr
    step = int(np.ceil(np.sqrt(arr.size / target)))
    return arr[::step, ::step]


def data_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of a (sub-sampled) array of modality values."""
    sub = sample(values)
    return float(np.min(sub)), float(np.max(sub))


def auto_window(values: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> VOI:
    """A LINEAR_EXACT window spanning the ``lo_pct``..``hi_pct`` percentiles of the data.

    Computed from the histogram of a sub-sampled grid (about 250,000 pixels), so it costs a few
    milliseconds on a 5-megapixel image.
    """
    sub = np.asarray(sample(values), dtype=np.float32).ravel()
    if sub.size == 0:
        return VOI(explanation="Auto", center=0.5, width=1.0, function="LINEAR_EXACT", origin="auto")
    lo, hi = np.percentile(sub, [lo_pct, hi_pct])
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        lo, hi = float(sub.min()), float(sub.max())
    if not hi > lo:
        hi = lo + 1.0
    return VOI(
        explanation=f"Auto ({lo_pct:g}-{hi_pct:g} %)",
        center=(lo + hi) / 2.0,
        width=hi - lo,
        function="LINEAR_EXACT",
        origin="auto",
    )


def validate_voi(voi: VOI, lo: float, hi: float) -> str | None:
    """Why ``voi`` is unusable for data in ``[lo, hi]``, or ``None`` when it is fine.

    Rejects non-positive widths, windows that miss the data entirely, windows more than
    8x wider than the data (they wash the image out), and VOI LUTs that are flat or do not
    overlap the data.
    """
    span = max(hi - lo, 1.0)
    if voi.lut is not None:
        table = np.asarray(voi.lut)
        if table.size < 2 or int(table.max()) == int(table.min()):
            return "VOI LUT is flat"
        first, last = voi.first_mapped, voi.first_mapped + table.size - 1
        if last < lo or first > hi:
            return "VOI LUT does not cover the pixel values"
        return None
    if voi.center is None or voi.width is None:
        return "no window"
    if not np.isfinite(voi.center) or not np.isfinite(voi.width) or voi.width <= 0:
        return "window width is not positive"
    if (voi.function or "LINEAR").upper() == "LINEAR" and voi.width < 1:
        return "LINEAR window narrower than 1"
    w_lo, w_hi = window_bounds(voi.center, voi.width, voi.function)
    if w_hi < lo or w_lo > hi:
        return "window lies outside the pixel values"
    if voi.width > _ABSURD_WIDTH_RATIO * span:
        return "window is far wider than the pixel values"
    return None


def sample_values(rg: Radiograph, target: int = _SAMPLE_TARGET) -> np.ndarray:
    """Modality values of a regular sub-grid of the stored pixels (about ``target`` pixels).

    Enough for data ranges, histograms and the auto window, at a fraction of the cost of
    transforming the whole image.
    """
    if rg.is_colour:
        return np.asarray(sample(rg.pixels, target), dtype=np.float32)
    return _apply_modality(np.asarray(sample(rg.pixels, target)), rg.modality_lut)


def default_voi(rg: Radiograph, values: np.ndarray | None = None) -> VOI:
    """The VOI shown first: the first usable file VOI (in file order), else :func:`auto_window`.

    Parameters
    ----------
    rg
        The radiograph; its ``vois`` come from (0028,1050)/(0028,1051) and (0028,3010).
    values
        Its modality values (or a sub-sample of them) if already computed; otherwise a
        sub-sample is transformed (:func:`sample_values`).
    """
    if values is None:
        values = sample_values(rg)
    if rg.vois:
        lo, hi = data_range(values)
        for voi in rg.vois:
            if validate_voi(voi, lo, hi) is None:
                return voi
    return auto_window(values)


# --------------------------------------------------------------------------------------------
# Whole chain
# --------------------------------------------------------------------------------------------


def _table_domain(dtype: np.dtype) -> np.ndarray | None:
    """All values of an 8/16-bit integer dtype, ordered as ``arr.view(unsigned)`` indexes."""
    if dtype == np.uint8 or dtype == np.uint16:
        return np.arange(np.iinfo(dtype).max + 1, dtype=np.int64)
    if dtype == np.int8 or dtype == np.int16:
        unsigned = np.uint8 if dtype == np.int8 else np.uint16
        return np.arange(np.iinfo(unsigned).max + 1, dtype=np.int64).astype(unsigned).view(dtype)
    return None


def display_lut(rg: Radiograph, voi: VOI) -> np.ndarray | None:
    """The whole chain evaluated for every possible stored value, as a uint8 table.

    Index it with ``rg.pixels.view(uint8|uint16)``; ``None`` for colour or non 8/16-bit data.
    """
    if rg.is_colour:
        return None
    domain = _table_domain(rg.pixels.dtype)
    if domain is None:
        return None
    unit = apply_voi(_apply_modality(domain, rg.modality_lut), voi)
    return to_u8(invert_if_monochrome1(unit, rg))


def display_image(rg: Radiograph, voi: VOI | None = None) -> np.ndarray:
    """Stored pixels -> uint8 display image (bone bright).

    Greyscale: modality transform -> ``voi`` (default :func:`default_voi`) -> MONOCHROME1
    inversion -> uint8, shape ``(rows, cols)``. Colour (RGB after the adapter's YBR / PALETTE
    conversion): uint8 ``(rows, cols, 3)``; non-8-bit colour is scaled to 0..255.
    """
    if rg.is_colour:
        px = rg.pixels
        if px.dtype == np.uint8:
            return px
        top = float(2 ** max(int(rg.bits_stored), 1) - 1)
        return to_u8(px.astype(np.float32) / np.float32(top))
    if voi is None:
        voi = default_voi(rg)
    table = display_lut(rg, voi)
    if table is not None:
        px = rg.pixels
        unsigned = np.uint8 if px.dtype.itemsize == 1 else np.uint16
        return table[px.view(unsigned)]
    unit = apply_voi(modality_values(rg), voi)
    return to_u8(invert_if_monochrome1(unit, rg))


@dataclass(frozen=True)
class Levels:
    """Fast-path display parameters for an image widget.

    Map :func:`level_image` linearly from ``lo`` (black) to ``hi`` (white), then invert if
    ``invert``. ``exact`` is False when the VOI is not a linear window (SIGMOID or a LUT table),
    where the levels only approximate it (use :func:`display_image` when the drag ends).
    """

    lo: float
    hi: float
    invert: bool
    exact: bool = True


def _linear_modality(mlut: ModalityLUT) -> bool:
    return mlut.lut is None and mlut.slope > 0


def level_image(rg: Radiograph) -> np.ndarray:
    """The array whose levels :func:`display_levels` gives.

    The stored pixels themselves when the modality transform is a rescale with a positive
    slope (levels are mapped back into stored values, so the widget needs no float copy);
    float32 modality values otherwise.
    """
    if rg.is_colour or _linear_modality(rg.modality_lut):
        return rg.pixels
    return modality_values(rg)


def display_levels(rg: Radiograph, voi: VOI) -> Levels:
    """Levels for :func:`level_image` that reproduce ``voi`` (window/level fast path)."""
    exact = voi.lut is None and (voi.function or "LINEAR").upper() != "SIGMOID"
    if voi.lut is not None:
        table = np.asarray(voi.lut, dtype=np.float64)
        moving = np.nonzero(table != table[0])[0]
        first = int(moving[0]) - 1 if moving.size else 0
        last = int(np.nonzero(table != table[-1])[0][-1]) + 1 if moving.size else len(table) - 1
        lo = voi.first_mapped + max(first, 0)
        hi = voi.first_mapped + last
        if table[-1] < table[0]:
            lo, hi = hi, lo
    else:
        if voi.center is None or voi.width is None:
            raise ValueError("VOI has neither a window nor a LUT")
        lo, hi = window_bounds(voi.center, voi.width, voi.function)
    mlut = rg.modality_lut
    if not rg.is_colour and _linear_modality(mlut):
        lo = (lo - mlut.intercept) / mlut.slope
        hi = (hi - mlut.intercept) / mlut.slope
    if hi == lo:
        hi = lo + 1e-3
    return Levels(lo=float(lo), hi=float(hi), invert=rg.is_inverted, exact=exact)


def histogram(values: np.ndarray, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of (sub-sampled) modality values: ``(counts, edges)`` like ``np.histogram``."""
    sub = np.asarray(sample(values), dtype=np.float32).ravel()
    if sub.size == 0:
        return np.zeros(bins, dtype=np.int64), np.linspace(0.0, 1.0, bins + 1)
    lo, hi = float(sub.min()), float(sub.max())
    if hi <= lo:
        hi = lo + 1.0
    return np.histogram(sub, bins=bins, range=(lo, hi))


def with_explanation(voi: VOI, explanation: str) -> VOI:
    """A copy of ``voi`` with a new explanation (for user-edited windows)."""
    return replace(voi, explanation=explanation)
