"""Overlay maths for masks and heatmaps, pure numpy (plus OpenCV for contours).

Conventions (see docs/ARCHITECTURE.md): masks are ``uint8`` labels at image resolution (0 =
background), heatmaps are ``float32`` in [0, 1] at image resolution. Everything here returns new
arrays and never touches its inputs.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

__all__ = [
    "COLORMAPS",
    "colormap_lut",
    "apply_colormap",
    "blend",
    "mask_contour",
    "overlay_mask",
    "heatmap_mass_inside",
    "HEAT_TRANSPARENT_BELOW",
    "heatmap_alpha",
    "heatmap_view",
]

# Anchor colours (RGB, 0..255) of perceptual maps, interpolated linearly in between. "inferno" and
# "viridis" are perceptually uniform and read in greyscale print; "jet" is offered only because
# users ask for it (it is not uniform and invents edges).
_ANCHORS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "inferno": (
        (0, 0, 4), (31, 12, 72), (85, 15, 109), (136, 34, 106), (186, 54, 85),
        (227, 89, 51), (249, 140, 10), (249, 201, 50), (252, 255, 164),
    ),
    "viridis": (
        (68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
        (31, 158, 137), (53, 183, 121), (110, 206, 88), (181, 222, 43), (253, 231, 37),
    ),
    "jet": ((0, 0, 128), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0), (128, 0, 0)),
    "grey": ((0, 0, 0), (255, 255, 255)),
}
COLORMAPS: tuple[str, ...] = tuple(_ANCHORS)


@lru_cache(maxsize=8)
def colormap_lut(name: str = "inferno") -> np.ndarray:
    """A (256, 3) uint8 lookup table for the colormap ``name`` (one of :data:`COLORMAPS`)."""
    try:
        anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    except KeyError:
        raise ValueError(f"unknown colormap {name!r}; choose one of {COLORMAPS}") from None
    xs = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, xs, anchors[:, c]) for c in range(3)], axis=1)
    out = np.rint(lut).astype(np.uint8)
    out.setflags(write=False)
    return out


def apply_colormap(heatmap: np.ndarray, name: str = "inferno") -> np.ndarray:
    """Map a float heatmap in [0, 1] (values outside are clipped, NaN is 0) to (H, W, 3) uint8."""
    h = np.ascontiguousarray(heatmap, dtype=np.float32)
    lut = colormap_lut(name)
    if h.ndim != 2:
        idx = np.clip(np.nan_to_num(h) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.asarray(lut[idx])
    # Clamp to [0, 1] with numpy's fmax/fmin, whose NaN rule is documented (NaN -> the other
    # operand, so NaN and -inf become 0, +inf becomes 1). OpenCV's own max() changed its NaN
    # behaviour between 4.x and 5.x (issue 13), so nothing here depends on it. Then round and
    # saturate to 0..255 in one C pass.
    clamped = np.fmax(h, np.float32(0.0))
    np.fmin(clamped, np.float32(1.0), out=clamped)  # +inf must saturate, not wrap (cvRound(inf))
    idx = cv2.convertScaleAbs(clamped, alpha=255.0)
    # cv2.LUT on a 3-channel index image is ~20x faster than numpy fancy indexing.
    return cv2.LUT(cv2.merge([idx, idx, idx]), lut.reshape(256, 1, 3))


# Heatmap values below this are not drawn (the colormap's dark low end laid a veil over the whole
# film); above it the opacity rises linearly to the full value at 1. One rule for the window, the
# CLI's heatmap PNGs and the DICOM Secondary Capture.
HEAT_TRANSPARENT_BELOW = 0.2


def heatmap_alpha(heatmap: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """Per-pixel opacity (float32 in [0, opacity]) of a [0, 1] heatmap overlay."""
    h = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    lo = HEAT_TRANSPARENT_BELOW
    return np.asarray(np.clip((h - lo) * (float(opacity) / (1.0 - lo)), 0.0, float(opacity)),
                      dtype=np.float32)


def heatmap_view(grey_or_rgb: np.ndarray, heatmap: np.ndarray, colormap: str = "inferno",
                 opacity: float = 0.5) -> np.ndarray:
    """The heatmap blended over an image (uint8 grey or RGB) as the window shows it."""
    return blend(grey_or_rgb, apply_colormap(heatmap, colormap), heatmap_alpha(heatmap, opacity))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError("blend expects uint8 images")
    if arr.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_GRAY2RGB)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return arr[:, :, :3]
    raise ValueError(f"expected a grey or RGB image, got shape {arr.shape}")


def blend(
    base: np.ndarray, layer_rgb: np.ndarray, alpha: float | np.ndarray = 0.4
) -> np.ndarray:
    """Alpha-blend ``layer_rgb`` over ``base``: ``out = (1 - a) base + a layer``.

    Parameters
    ----------
    base
        uint8 grey (H, W) or RGB (H, W, 3) image.
    layer_rgb
        uint8 (H, W, 3) overlay, same rows and columns as ``base``.
    alpha
        Opacity in [0, 1], a scalar or a per-pixel (H, W) array (e.g. the heatmap itself, so cold
        regions stay transparent).
    """
    b = np.ascontiguousarray(_as_rgb(base))
    layer = np.ascontiguousarray(_as_rgb(layer_rgb))
    if b.shape != layer.shape:
        raise ValueError(f"shape mismatch: base {b.shape[:2]} vs layer {layer.shape[:2]}")
    # Clamp to [0, 1] with numpy's fmin/fmax, which turn NaN into the bound (NaN -> 0:
    # transparent); OpenCV's handling of NaN weights is not something to rely on (issue 13).
    a = np.fmin(np.fmax(np.asarray(alpha, dtype=np.float32), np.float32(0.0)), np.float32(1.0))
    if a.ndim == 0:
        return np.asarray(cv2.addWeighted(b, 1.0 - float(a), layer, float(a), 0.0))
    if a.shape != b.shape[:2]:
        raise ValueError(f"alpha {a.shape} does not match the image {b.shape[:2]}")
    a = np.ascontiguousarray(a)
    # Per-pixel weights in one C pass (several times faster than float numpy on 5 MP images).
    return cv2.blendLinear(b, layer, np.float32(1.0) - a, a)


def mask_contour(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boolean (H, W) outline of the non-zero region of ``mask`` (inner boundary pixels).

    ``thickness`` is the width of the outline in pixels.
    """
    m = (np.asarray(mask) > 0).astype(np.uint8)
    if thickness < 1:
        raise ValueError("thickness must be >= 1")
    kernel = np.ones((3, 3), np.uint8)
    eroded = cv2.erode(m, kernel, iterations=thickness, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return np.asarray((m > 0) & (eroded == 0))


def overlay_mask(
    base: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = (0, 200, 255),
    alpha: float = 0.25,
    contour: bool = True,
) -> np.ndarray:
    """Tint ``mask > 0`` in ``colour`` at ``alpha`` over ``base`` and draw its outline opaque."""
    rgb = _as_rgb(base)
    inside = np.asarray(mask) > 0
    layer = np.empty(rgb.shape, np.uint8)
    layer[...] = np.asarray(colour, np.uint8)
    out = blend(rgb, layer, np.where(inside, np.float32(alpha), np.float32(0.0)))
    if contour:
        out[mask_contour(mask)] = np.asarray(colour, np.uint8)
    return out


def heatmap_mass_inside(heatmap: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the heatmap's total mass that falls inside ``mask > 0`` (0..1).

    Both arrays are at the same resolution. Returns ``None`` when the heatmap has no mass
    (all zero), where the share is undefined.
    """
    h = np.ascontiguousarray(heatmap, dtype=np.float32)
    m = np.asarray(mask)
    if h.shape != m.shape or h.ndim != 2:
        raise ValueError(f"shape mismatch: heatmap {h.shape} vs mask {m.shape}")
    # Negative values and NaN carry no mass (numpy's fmax: NaN -> 0); +inf makes the share
    # undefined (None below).
    h = np.fmax(h, np.float32(0.0))
    # OpenCV sums in double precision in one pass, without the copies boolean indexing makes.
    total = cv2.sumElems(h)[0]
    if not 0.0 < total < float("inf"):
        return None
    m8 = np.ascontiguousarray(m != 0, dtype=np.uint8) if m.dtype != np.uint8 else np.ascontiguousarray(m)
    m8 = np.minimum(m8, 1) if cv2.minMaxLoc(m8)[1] > 1 else m8
    # (cv2.mean with a mask is ~10x slower than multiplying by the 0/1 mask and summing.)
    inside = cv2.sumElems(cv2.multiply(h, m8, dtype=cv2.CV_32F))[0]
    return float(min(1.0, inside / total))
