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

The steps live in :mod:`viewer.core.grayscale` (re-exported here); this module chooses windows
(:func:`default_voi`, :func:`auto_window`) and composes the chain. :func:`display_image` runs
the whole chain. For integer pixels it evaluates the chain once per possible stored value (at
most 65,536 entries) and indexes that table, which is identical to the element-wise chain and
several times faster on a 5-megapixel radiograph. :func:`display_levels`
gives the UI a fast path for window/level drags: levels in the space of :func:`level_image`,
which an image widget can apply without recomputing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from viewer.core.grayscale import (  # re-exported: the steps of the chain
    _apply_modality,
    apply_voi,
    apply_voi_lut,
    apply_window,
    invert_if_monochrome1,
    modality_values,
    to_u8,
    window_bounds,
)
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


# Range presets for projection radiographs, whose stored values carry no physical unit (no HU
# as in CT): windows over a part of the image's own value distribution, in percentiles.
RANGE_PRESETS: tuple[tuple[str, float, float], ...] = (
    ("Dark range (lungs)", 0.5, 60.0),
    ("Middle range (soft tissue, mediastinum)", 20.0, 97.0),
    ("Bright range (bone)", 45.0, 99.8),
)


def range_presets(values: np.ndarray) -> tuple[VOI, ...]:
    """The :data:`RANGE_PRESETS` as LINEAR_EXACT windows over ``values`` (one percentile pass)."""
    sub = np.asarray(sample(values), dtype=np.float32).ravel()
    if sub.size == 0:
        return ()
    points = np.percentile(sub, [p for _, lo, hi in RANGE_PRESETS for p in (lo, hi)])
    out = []
    for i, (name, lo_pct, hi_pct) in enumerate(RANGE_PRESETS):
        lo, hi = float(points[2 * i]), float(points[2 * i + 1])
        if hi > lo:
            out.append(VOI(explanation=f"{name} {lo_pct:g}-{hi_pct:g} %", center=(lo + hi) / 2.0,
                           width=hi - lo, function="LINEAR_EXACT", origin="auto"))
    return tuple(out)


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
        return np.asarray(table[px.view(unsigned)])
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
        lo: float = voi.first_mapped + max(first, 0)
        hi: float = voi.first_mapped + last
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
