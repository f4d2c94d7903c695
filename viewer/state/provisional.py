"""Progressive display: a reduced-resolution decode stands in until the full image arrives.

A cold click on a JPEG 2000 film waited for the whole decode (issue 16: ~0.6 s on the loaded
2-core machine). JPEG 2000 resolution levels and JPEG Baseline DCT scaling decode a fraction of
the image far faster (:mod:`viewer.dicom.reduced`, the thumbnails' path), so the window first
shows such a decode, sized for the viewport, then swaps in the full image.

The stand-in is made to look like the full image to the canvas: :func:`provisional_image`
scales the reduced pixels back up to the full geometry, so the canvas, the measurements' and the
ruler's coordinates, zoom and pan are in full-image pixels before and after the swap, and the
swap moves nothing. Its windows, value range and histogram come from the reduced decode (same
modality units). Its pixel *values* are interpolated, so the canvas marks the image provisional
and no tool reads them (see ``ImageCanvas.provisional``). Qt-free.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from viewer.core.radiograph import Radiograph
from viewer.core.windowing import level_image
from viewer.state.display_plan import PreparedImage, prepare_image

__all__ = ["PREVIEW_TRANSFER_SYNTAXES", "PREVIEW_SCALE", "preview_reduce_to", "provisional_image",
           "wants_preview"]
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

# Encodings with a fast reduced-resolution decode (viewer.dicom.reduced): JPEG 2000 (lossless
# only, and lossy) and JPEG Baseline. Others (JPEG-LS, JPEG Lossless, RLE) decode at full size
# only, and uncompressed images decode faster than a preview would arrive.
PREVIEW_TRANSFER_SYNTAXES = frozenset({
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.50",
})
MAX_HALVINGS = 3  # a 1/8 stand-in is the coarsest worth showing (more looks like a blur)
MIN_SIDE_PX = 64  # a viewport smaller than this gets no preview
# The stand-in keeps at least this share of the pixels the image covers on screen at fit zoom
# (upscaled at most 2x for the moment the full image takes): one more halving than a stand-in
# as sharp as the screen, i.e. a decode ~4x cheaper (RG1 1841x1955 in a 700-px view: two
# J2K levels in ~20 ms instead of one in ~55 ms, 4 Dec 2026).
PREVIEW_SCALE = 0.5


def wants_preview(record: Any) -> bool:
    """Whether ``record`` (an ``InstanceRecord``) is encoded so that a reduced decode is fast."""
    return (getattr(record, "kind", "") == "dicom"
            and getattr(record, "transfer_syntax_uid", "") in PREVIEW_TRANSFER_SYNTAXES
            and int(getattr(record, "rows", 0) or 0) > 0 and int(getattr(record, "cols", 0) or 0) > 0)


def preview_reduce_to(rows: int, cols: int, view_w: float, view_h: float,
                      j2k: bool = True) -> int | None:
    """The ``reduce_to`` to decode a ``rows`` x ``cols`` image with for a viewport of
    ``view_w`` x ``view_h`` device pixels, or ``None`` when no reduction fits.

    The stand-in keeps at least ``PREVIEW_SCALE`` of the pixels the image covers on screen at
    fit zoom (``max(rows, cols) * min(view_w / cols, view_h / rows)``); the decoder halves the
    size ``k`` times, ``k`` the most that keeps that (:func:`viewer.dicom.reduced.decode_reduced`
    keeps a long side of at least ``1.5 * reduce_to``, so ``reduce_to = long / (1.5 * 2**k)``
    asks for exactly ``k``). ``j2k`` is kept for callers; JPEG 2000 and JPEG Baseline follow
    the same rule since :mod:`viewer.dicom.reduced` decodes any side length reduced.
    """
    if rows <= 0 or cols <= 0 or min(view_w, view_h) < MIN_SIDE_PX:
        return None
    long_side = max(rows, cols)
    needed = PREVIEW_SCALE * long_side * min(view_w / cols, view_h / rows)
    if needed <= 0 or long_side < 2 * needed:
        return None
    halvings = min(int(math.floor(math.log2(long_side / needed))), MAX_HALVINGS)
    if halvings < 1:
        return None
    return max(1, int(long_side // (1.5 * 2**halvings)))


def provisional_image(small: Radiograph, rows: int, cols: int) -> PreparedImage | None:
    """A stand-in :class:`PreparedImage` of ``rows`` x ``cols`` from the reduced ``small``.

    Windows, value range, presets and histogram are ``small``'s (modality units, like the
    full image's); the pixels are scaled up (bilinear) to the full geometry, and the spacing is
    the file's again (the reduced decode multiplied it by its power-of-two factor). The fit-zoom
    preview layer gets ``small``'s own level array, so at fit zoom nothing is interpolated.
    ``None`` when ``small`` is not smaller than the full image (the decoder could not reduce
    it: it decoded the full image, which is then no quicker than the full request).
    """
    if small.rows >= rows and small.cols >= cols:
        return None
    base = prepare_image(small)
    pixels = cv2.resize(small.pixels, (cols, rows), interpolation=cv2.INTER_LINEAR)
    spacing = small.spacing_mm
    if spacing is not None:
        factor = 2.0 ** round(math.log2(max(rows / small.rows, 1.0)))
        spacing = (spacing[0] / factor, spacing[1] / factor)
    big = replace(small, pixels=np.ascontiguousarray(pixels), spacing_mm=spacing)
    level = big.pixels if big.is_colour else level_image(big)
    fit_layer = base.level_array if base.level_array.ndim == 2 else None
    return PreparedImage(big, level, base.value_range, base.voi, base.presets, base.hist_counts,
                         base.hist_edges, fit_layer)
