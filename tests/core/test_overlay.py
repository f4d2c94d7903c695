"""Colormaps, blending, contours and heatmap mass (viewer.core.overlay)."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.overlay import (
    COLORMAPS, apply_colormap, blend, colormap_lut, heatmap_mass_inside, mask_contour,
    overlay_mask,
)


@pytest.mark.parametrize("name", COLORMAPS)
def test_luts_are_256_rgb_with_fixed_ends(name: str) -> None:
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    with pytest.raises(ValueError):
        lut[0, 0] = 1  # shared and read-only


def test_inferno_is_monotonic_in_lightness() -> None:
    lut = colormap_lut("inferno").astype(float)
    luma = lut @ np.array([0.299, 0.587, 0.114])
    assert np.all(np.diff(luma) >= -0.5)  # perceptual maps get lighter as values rise
    assert luma[0] < 10 and luma[-1] > 200


def test_apply_colormap_clips_and_maps() -> None:
    heat = np.array([[-1.0, 0.0, 0.5, 1.0, 2.0, np.nan]], np.float32)
    rgb = apply_colormap(heat, "grey")
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 0, 128, 255, 255, 0])
    with pytest.raises(ValueError):
        apply_colormap(heat, "rainbow-ish")


def test_blend_scalar_and_per_pixel_alpha() -> None:
    base = np.full((2, 2), 100, np.uint8)
    layer = np.zeros((2, 2, 3), np.uint8)
    layer[...] = (200, 0, 100)
    out = blend(base, layer, 0.5)
    np.testing.assert_array_equal(out[0, 0], [150, 50, 100])
    alpha = np.array([[0.0, 1.0], [0.25, 0.75]], np.float32)
    out = blend(base, layer, alpha)
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])
    np.testing.assert_array_equal(out[0, 1], [200, 0, 100])
    np.testing.assert_array_equal(out[1, 0], [125, 75, 100])
    with pytest.raises(ValueError):
        blend(base, np.zeros((3, 2, 3), np.uint8))


def test_contour_is_the_inner_boundary() -> None:
    mask = np.zeros((7, 7), np.uint8)
    mask[1:6, 1:6] = 1
    edge = mask_contour(mask)
    assert edge.sum() == 16  # 5x5 square: 25 - 9 interior
    assert not edge[3, 3] and edge[1, 1] and not edge[0, 0]
    assert mask_contour(mask, thickness=2).sum() == 24


def test_overlay_mask_tints_inside_only() -> None:
    base = np.zeros((5, 5), np.uint8)
    mask = np.zeros((5, 5), np.uint8)
    mask[1:4, 1:4] = 1
    out = overlay_mask(base, mask, colour=(0, 200, 0), alpha=0.5, contour=False)
    assert out[2, 2, 1] == 100 and out[0, 0].sum() == 0
    out = overlay_mask(base, mask, colour=(0, 200, 0), alpha=0.5, contour=True)
    assert out[1, 1, 1] == 200 and out[2, 2, 1] == 100


def test_heatmap_mass_inside_mask() -> None:
    heat = np.zeros((4, 4), np.float32)
    heat[0, 0], heat[3, 3] = 3.0, 1.0
    mask = np.zeros((4, 4), np.uint8)
    mask[2:, 2:] = 1
    assert heatmap_mass_inside(heat, mask) == pytest.approx(0.25)
    assert heatmap_mass_inside(np.zeros((4, 4)), mask) is None
    with pytest.raises(ValueError):
        heatmap_mass_inside(heat, mask[:2])


def test_nan_and_inf_never_depend_on_opencv() -> None:
    """NaN/inf in a heatmap: NaN and -inf are cold (0), +inf is the hottest value; the rule is
    numpy's (fmax), not OpenCV's, whose NaN handling changed in 5.x (issue 13)."""
    heat = np.array([[np.nan, -np.inf, np.inf, 0.25]], np.float32)
    for arr in (heat, heat[..., None]):  # the 2-D fast path and the generic path agree
        rgb = apply_colormap(arr, "grey").reshape(-1, 3)
        np.testing.assert_array_equal(rgb[:, 0], [0, 0, 255, 64])
    base = np.full((1, 4), 100, np.uint8)
    layer = np.full((1, 4, 3), 200, np.uint8)
    out = blend(base, layer, heat)  # NaN/-inf alpha: transparent; +inf: opaque
    np.testing.assert_array_equal(out[0, :, 0], [100, 100, 200, 125])
    mask = np.array([[1, 1, 0, 1]], np.uint8)
    assert heatmap_mass_inside(np.array([[np.nan, 0.5, 0.5, -1.0]], np.float32), mask) == 0.5
    assert heatmap_mass_inside(heat, mask) is None  # +inf: undefined share


def test_one_heatmap_rule_for_window_cli_and_exports() -> None:
    """Issue 16/17: transparent below 20 %, then rising; the canvas layer, the CLI PNG and the
    Secondary Capture all use core.overlay's rule and colormap."""
    from viewer.core.overlay import HEAT_TRANSPARENT_BELOW, heatmap_alpha, heatmap_view

    heat = np.array([[0.0, HEAT_TRANSPARENT_BELOW, 0.6, 1.0]], np.float32)
    np.testing.assert_allclose(heatmap_alpha(heat, 0.5), [[0.0, 0.0, 0.25, 0.5]], atol=1e-6)
    grey = np.full((1, 4), 100, np.uint8)
    view = heatmap_view(grey, heat, "grey", 0.5)
    np.testing.assert_array_equal(view, blend(grey, apply_colormap(heat, "grey"), heatmap_alpha(heat, 0.5)))
    assert list(view[0, :2, 0]) == [100, 100]  # below the threshold: the film untouched
