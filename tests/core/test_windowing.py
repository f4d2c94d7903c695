"""Every display-pipeline step against hand-computed arrays (DICOM PS3.3 C.11)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from viewer.core.radiograph import VOI, ModalityLUT, Radiograph
from viewer.core.windowing import (
    apply_voi,
    apply_voi_lut,
    apply_window,
    auto_window,
    default_voi,
    display_image,
    display_levels,
    histogram,
    invert_if_monochrome1,
    level_image,
    modality_values,
    to_u8,
    validate_voi,
)


def rg_of(pixels, **kw) -> Radiograph:
    return Radiograph(pixels=np.asarray(pixels), **kw)


# --- step 1: modality --------------------------------------------------------------------------


def test_rescale_slope_intercept():
    rg = rg_of(np.array([[0, 50], [100, 4095]], dtype=np.uint16),
               modality_lut=ModalityLUT(slope=2.0, intercept=-100.0))
    out = modality_values(rg)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[-100, 0], [100, 8090]])


def test_signed_stored_values_rescale():
    rg = rg_of(np.array([-1024, -1, 0, 3071], dtype=np.int16), signed=True,
               modality_lut=ModalityLUT(slope=1.0, intercept=24.0))
    np.testing.assert_array_equal(modality_values(rg), [-1000, 23, 24, 3095])


def test_modality_lut_table_clamps_below_and_above():
    mlut = ModalityLUT(lut=np.array([10, 20, 30], dtype=np.float32), first_mapped=5)
    rg = rg_of(np.array([3, 5, 6, 7, 9], dtype=np.uint16), modality_lut=mlut)
    np.testing.assert_array_equal(modality_values(rg), [10, 10, 20, 30, 30])


# --- step 2: VOI ---------------------------------------------------------------------------------


def test_linear_window_formula():
    # c=50, w=11: x <= 44.5 -> 0, x > 55.5 -> 1, else (x - 49.5) / 10 + 0.5
    x = np.array([44.0, 44.5, 45.0, 50.0, 55.0, 55.5, 56.0])
    expected = [0.0, 0.0, 0.05, 0.55, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(apply_window(x, 50, 11), expected, atol=1e-6)


def test_linear_window_width_one_is_a_threshold():
    np.testing.assert_array_equal(apply_window(np.array([9.0, 9.5, 9.6, 10.0]), 10, 1), [0, 0, 1, 1])


def test_linear_exact_window_formula():
    x = np.array([40.0, 45.0, 47.5, 50.0, 55.0, 60.0])
    np.testing.assert_allclose(apply_window(x, 50, 10, "LINEAR_EXACT"), [0, 0, 0.25, 0.5, 1, 1], atol=1e-6)


def test_sigmoid_window_formula():
    x = np.array([45.0, 50.0, 55.0])
    expected = [1 / (1 + math.exp(2.0)), 0.5, 1 / (1 + math.exp(-2.0))]
    np.testing.assert_allclose(apply_window(x, 50, 10, "SIGMOID"), expected, rtol=1e-6)


@pytest.mark.parametrize("fn,width", [("LINEAR", 0.5), ("LINEAR_EXACT", 0), ("SIGMOID", -1)])
def test_invalid_widths_raise(fn, width):
    with pytest.raises(ValueError):
        apply_window(np.zeros(3), 0, width, fn)


def test_voi_lut_table_lookup():
    voi = VOI("lut", lut=np.array([0, 100, 200, 255], dtype=np.float32), first_mapped=10, bits=8)
    x = np.array([9.0, 10.0, 11.4, 12.0, 13.0, 20.0], dtype=np.float32)
    np.testing.assert_allclose(apply_voi_lut(x, voi), [0, 0, 100 / 255, 200 / 255, 1, 1], atol=1e-6)
    np.testing.assert_allclose(apply_voi(x, voi), apply_voi_lut(x, voi))


def test_voi_lut_declared_16_bits_filled_with_12():
    voi = VOI("lut", lut=np.array([0, 2048, 4095], dtype=np.float32), first_mapped=0, bits=16)
    np.testing.assert_allclose(apply_voi_lut(np.array([0, 1, 2]), voi), [0, 2048 / 4095, 1], atol=1e-6)


def test_apply_voi_dispatches_to_window():
    voi = VOI("w", center=50, width=10, function="LINEAR_EXACT")
    np.testing.assert_allclose(apply_voi(np.array([45.0, 50.0]), voi), [0.0, 0.5])


# --- step 3/4: inversion last, 8-bit --------------------------------------------------------------


def test_monochrome1_inverts_after_voi():
    unit = np.array([0.0, 0.25, 1.0], dtype=np.float32)
    m1 = rg_of(np.zeros((1, 1), np.uint16), photometric="MONOCHROME1")
    m2 = rg_of(np.zeros((1, 1), np.uint16), photometric="MONOCHROME2")
    np.testing.assert_allclose(invert_if_monochrome1(unit, m1), [1.0, 0.75, 0.0])
    np.testing.assert_array_equal(invert_if_monochrome1(unit, m2), unit)


def test_to_u8_rounds():
    np.testing.assert_array_equal(to_u8(np.array([0.0, 0.5 / 255, 0.499 / 255, 1.0, 1.2, -0.1])),
                                  [0, 1, 0, 255, 255, 0])


def test_display_image_full_chain_hand_computed():
    # stored -> rescale (intercept -1024) -> LINEAR c=0 w=2001 -> (MONOCHROME1: invert) -> u8
    stored = np.array([[0, 1000], [2000, 4095]], dtype=np.uint16)
    modality = np.array([[-1024, -24], [976, 3071]], dtype=np.float64)
    unit = np.clip((modality + 0.5) / 2000 + 0.5, 0, 1)
    voi = VOI("w", center=0, width=2001)
    mlut = ModalityLUT(intercept=-1024.0)
    m2 = rg_of(stored, modality_lut=mlut, bits_stored=12)
    m1 = rg_of(stored, modality_lut=mlut, bits_stored=12, photometric="MONOCHROME1")
    np.testing.assert_array_equal(display_image(m2, voi), np.floor(unit * 255 + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(display_image(m1, voi), np.floor((1 - unit) * 255 + 0.5).astype(np.uint8))
    # bone (high stored value) is bright in MONOCHROME2 and dark in MONOCHROME1
    assert display_image(m2, voi)[1, 1] == 255 and display_image(m1, voi)[1, 1] == 0


@pytest.mark.parametrize("dtype,lo,hi", [(np.uint8, 0, 255), (np.uint16, 0, 65535),
                                         (np.int16, -32768, 32767), (np.int32, -70000, 70000)])
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_table_fast_path_equals_elementwise_chain(dtype, lo, hi, photometric):
    rng = np.random.default_rng(1)
    px = rng.integers(lo, hi, (40, 30), endpoint=True).astype(dtype)
    rg = rg_of(px, photometric=photometric, signed=np.dtype(dtype).kind == "i",
               modality_lut=ModalityLUT(slope=0.5, intercept=-20.0))
    for voi in (VOI("a", center=100, width=300), VOI("b", center=-50, width=80, function="SIGMOID"),
                VOI("c", lut=np.linspace(0, 4095, 200).astype(np.float32), first_mapped=-60, bits=12)):
        direct = to_u8(invert_if_monochrome1(apply_voi(modality_values(rg), voi), rg))
        np.testing.assert_array_equal(display_image(rg, voi), direct)


def test_display_image_colour_passthrough_and_scaling():
    rgb = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    assert display_image(rg_of(rgb, photometric="RGB")) is rgb
    rgb16 = np.array([[[0, 4095, 2048]]], dtype=np.uint16)
    np.testing.assert_array_equal(display_image(rg_of(rgb16, photometric="RGB", bits_stored=12)),
                                  [[[0, 255, 128]]])


# --- auto window, validation, default --------------------------------------------------------------


def test_auto_window_percentiles():
    values = np.arange(1000, dtype=np.float32).reshape(40, 25)
    voi = auto_window(values)
    lo, hi = np.percentile(values, [0.5, 99.5])
    assert voi.origin == "auto" and voi.function == "LINEAR_EXACT"
    assert voi.center == pytest.approx((lo + hi) / 2) and voi.width == pytest.approx(hi - lo)


def test_auto_window_flat_image_has_positive_width():
    voi = auto_window(np.full((10, 10), 7.0))
    assert voi.width > 0 and voi.center == pytest.approx(7.5)


def test_validate_voi_reasons():
    assert validate_voi(VOI("ok", center=50, width=100), 0, 100) is None
    assert "outside" in validate_voi(VOI("x", center=5000, width=100), 0, 100)
    assert "wider" in validate_voi(VOI("x", center=50, width=1e6), 0, 100)
    assert "positive" in validate_voi(VOI("x", center=50, width=0), 0, 100)
    assert "flat" in validate_voi(VOI("x", lut=np.zeros(4, np.float32)), 0, 100)
    assert "cover" in validate_voi(VOI("x", lut=np.arange(4, dtype=np.float32), first_mapped=500), 0, 100)


def test_default_voi_prefers_first_usable_file_window():
    px = np.arange(100, dtype=np.uint16).reshape(10, 10)
    bad = VOI("absurd", center=50, width=1e6)
    good = VOI("good", center=40, width=60)
    assert default_voi(rg_of(px, vois=(bad, good))) is good
    fallback = default_voi(rg_of(px, vois=(bad,)))
    assert fallback.origin == "auto"
    assert default_voi(rg_of(px)).origin == "auto"


# --- level fast path, histogram ---------------------------------------------------------------------


def test_display_levels_in_stored_space_match_display_image():
    rng = np.random.default_rng(2)
    px = rng.integers(0, 4096, (50, 50)).astype(np.uint16)
    rg = rg_of(px, photometric="MONOCHROME1", modality_lut=ModalityLUT(slope=2.0, intercept=-100.0))
    voi = VOI("w", center=3000, width=2001)
    lv = display_levels(rg, voi)
    assert level_image(rg) is px
    assert lv.invert and lv.exact
    # bounds in modality space: 3000 - 0.5 -/+ 1000 -> stored (m + 100) / 2
    assert lv.lo == pytest.approx((1999.5 + 100) / 2) and lv.hi == pytest.approx((3999.5 + 100) / 2)
    unit = np.clip((px.astype(np.float64) - lv.lo) / (lv.hi - lv.lo), 0, 1)
    widget = np.floor((1 - unit) * 255 + 0.5)
    assert np.abs(widget - display_image(rg, voi).astype(np.float64)).max() <= 1


def test_level_image_is_modality_values_for_lut_transform():
    rg = rg_of(np.array([[0, 1]], np.uint16), modality_lut=ModalityLUT(lut=np.array([5, 9], np.float32)))
    np.testing.assert_array_equal(level_image(rg), [[5, 9]])


def test_histogram_counts_all_samples():
    values = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    counts, edges = histogram(values, bins=10)
    assert counts.sum() == values.size and len(edges) == 11
    np.testing.assert_array_equal(counts, [1000] * 10)


def test_display_levels_for_a_voi_lut_span_its_ramp():
    table = np.concatenate([np.zeros(10), np.linspace(0, 4095, 100), np.full(10, 4095)]).astype(np.float32)
    voi = VOI("lut", lut=table, first_mapped=1000, bits=12)
    lv = display_levels(rg_of(np.zeros((2, 2), np.uint16)), voi)
    assert not lv.exact and not lv.invert
    # flat 0 up to index 10 (the ramp starts at 0 too), rising from value 1010; 4095 from 1109
    assert (lv.lo, lv.hi) == (1010.0, 1109.0)


def test_range_presets_cover_dark_middle_and_bright_parts() -> None:
    """Issue 16: presets for lung, soft tissue and bone; radiographs have no HU, so they are
    windows over the image's own value distribution."""
    from viewer.core.windowing import range_presets

    values = np.linspace(0.0, 4000.0, 100_000, dtype=np.float32)
    dark, middle, bright = range_presets(values)
    assert "lungs" in dark.explanation and "bone" in bright.explanation
    assert dark.center < middle.center < bright.center
    assert dark.center - dark.width / 2 == pytest.approx(20.0, abs=2.0)  # 0.5th percentile
    assert bright.center + bright.width / 2 == pytest.approx(3992.0, abs=2.0)  # 99.8th
    assert all(v.origin == "auto" and v.function == "LINEAR_EXACT" for v in (dark, middle, bright))
    assert range_presets(np.zeros((0,), np.float32)) == ()
