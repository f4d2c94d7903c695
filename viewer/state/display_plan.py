"""How the canvas shows a radiograph cheaply: one array plus display levels.

Window/level must update in a few milliseconds during a drag, so the canvas never recomputes a
display image per step. It shows :func:`viewer.core.windowing.level_image` (the stored pixels
when (0028,1053) Rescale Slope is positive and there is no (0028,3000) Modality LUT, else float32
modality values) and changes only the image item's levels, which
:func:`viewer.core.windowing.display_levels` derives from a (0028,1050)/(0028,1051) window.
MONOCHROME1 inversion (the last pipeline step) and the user's "invert" swap the two levels,
which the image item renders as an inverted ramp at the same cost.

Windows the levels cannot express exactly (a (0028,3010) VOI LUT Sequence table, a SIGMOID
(0028,1056) VOI LUT Function) go through :func:`viewer.core.windowing.display_image` (uint8
with fixed levels); the first drag turns them into a LINEAR window, back on the fast path.

:func:`prepare_image` does the per-image work (default VOI, value range, histogram, presets)
and is meant to run on a worker thread right after decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from viewer.core.radiograph import VOI, Radiograph
from viewer.core.windowing import (
    auto_window,
    range_presets,
    data_range,
    default_voi,
    display_image,
    display_levels,
    histogram,
    level_image,
    modality_values,
)
from viewer.state.view_state import WindowLevel


@dataclass(frozen=True)
class PreparedImage:
    """A decoded radiograph with what the canvas and the window panel need, computed off the
    GUI thread.

    Attributes
    ----------
    radiograph
        The decoded frame.
    level_array
        The array the image item shows (see module docstring); RGB uint8 for colour.
    value_range
        ``(min, max)`` of the modality values (sub-sampled).
    voi
        The VOI to open with (:func:`viewer.core.windowing.default_voi`).
    presets
        Every VOI the file offers, then the auto window.
    hist_counts, hist_edges
        Histogram of the modality values for the window panel.
    preview
        ``level_array`` shrunk by area averaging for large images (``None`` when small): shown
        while zoomed out, so a window/level step renders ~4x fewer pixels.
    """

    radiograph: Radiograph
    level_array: np.ndarray
    value_range: tuple[float, float]
    voi: VOI
    presets: tuple[VOI, ...]
    hist_counts: np.ndarray
    hist_edges: np.ndarray
    preview: np.ndarray | None = None


@dataclass(frozen=True)
class DisplayPlan:
    """The array and levels handed to the image item; ``fixed`` when already windowed."""

    array: np.ndarray
    levels: tuple[float, float]
    fixed: bool


def prepare_image(rg: Radiograph) -> PreparedImage:
    """Per-image preparation (a few tens of ms on 5 megapixels; run it on a worker)."""
    if rg.is_colour:
        counts, edges = histogram(rg.pixels.mean(axis=2), bins=256)
        voi = VOI("Full range", 127.5, 256.0, "LINEAR", origin="auto")
        return PreparedImage(rg, rg.pixels, (0.0, 255.0), voi, (voi,), counts, edges)
    values = modality_values(rg)
    voi = default_voi(rg, values)
    auto = auto_window(values)
    counts, edges = histogram(values, bins=256)
    levels = level_image(rg)
    return PreparedImage(
        rg, levels, data_range(values), voi, tuple(rg.vois) + (auto,) + range_presets(values),
        counts, edges, make_preview(levels),
    )


PREVIEW_MIN_PIXELS = 2_000_000


def make_preview(array: np.ndarray, min_pixels: int = PREVIEW_MIN_PIXELS) -> np.ndarray | None:
    """Half-size (area-averaged) copy of a large greyscale level array, same dtype."""
    if array.ndim != 2 or array.size < min_pixels or array.dtype not in (np.uint8, np.uint16, np.float32):
        return None
    rows, cols = array.shape
    return cv2.resize(array, (cols // 2, rows // 2), interpolation=cv2.INTER_AREA)


def voi_to_window(voi: VOI) -> WindowLevel | None:
    """A :class:`WindowLevel` for a window-type VOI, ``None`` for a VOI LUT table."""
    if voi.lut is not None or voi.center is None or voi.width is None:
        return None
    return WindowLevel(float(voi.center), float(voi.width), voi.explanation, voi.origin)


def window_to_voi(window: WindowLevel, function: str = "LINEAR") -> VOI:
    """The VOI value object for a window (for the full pipeline and for exports)."""
    return VOI(
        window.explanation or "Manual", window.center, window.width, function or "LINEAR",
        origin="user" if window.origin == "drag" else window.origin,
    )


def is_exact(voi: VOI | None) -> bool:
    """Whether levels reproduce ``voi`` exactly (a LINEAR or LINEAR_EXACT window)."""
    return voi is not None and voi.lut is None and (voi.function or "LINEAR").upper() != "SIGMOID"


def make_plan(
    prepared: PreparedImage, window: WindowLevel | None, voi: VOI | None, user_invert: bool
) -> DisplayPlan:
    """Array and levels for the canvas.

    Parameters
    ----------
    prepared
        The prepared image.
    window
        The current window (fast path), or ``None`` to display ``voi`` through the full chain.
    voi
        The VOI the window came from; its (0028,1056) function decides LINEAR vs LINEAR_EXACT,
        and a table or SIGMOID VOI is rendered through the full pipeline when ``window`` is
        ``None`` or equals that VOI's window.
    user_invert
        The user's invert toggle (applied on top of MONOCHROME1 handling).
    """
    rg = prepared.radiograph
    if rg.is_colour:
        return DisplayPlan(prepared.level_array, _ordered(0.0, 255.0, user_invert), True)
    if window is None or (voi is not None and not is_exact(voi) and voi_to_window(voi) == window):
        shown = display_image(rg, voi)
        return DisplayPlan(shown, _ordered(0.0, 255.0, user_invert), True)
    return DisplayPlan(prepared.level_array, window_levels(rg, window, voi, user_invert), False)


def window_levels(
    rg: Radiograph, window: WindowLevel, voi: VOI | None, user_invert: bool
) -> tuple[float, float]:
    """Levels on :func:`level_image` for ``window`` (swapped to invert)."""
    function = "LINEAR"
    if voi is not None and voi.function and voi.function.upper() == "LINEAR_EXACT":
        function = "LINEAR_EXACT"
    lv = display_levels(rg, window_to_voi(window, function))
    return _ordered(lv.lo, lv.hi, lv.invert != bool(user_invert))


def _ordered(lo: float, hi: float, invert: bool) -> tuple[float, float]:
    return (hi, lo) if invert else (lo, hi)


def modality_at(rg: Radiograph, stored: float) -> float:
    """The modality value of one stored value ((0028,1052)/(0028,1053) or (0028,3000))."""
    mlut = rg.modality_lut
    if mlut.lut is not None:
        table = np.asarray(mlut.lut)
        index = int(np.clip(int(stored) - mlut.first_mapped, 0, table.size - 1))
        return float(table[index])
    return float(stored) * mlut.slope + mlut.intercept
