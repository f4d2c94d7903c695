"""The levels fast path must reproduce the full display pipeline (Qt-free)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ui.helpers import gradient_radiograph
from viewer.core.radiograph import VOI
from viewer.core.windowing import display_image
from viewer.state.display_plan import (
    make_plan,
    modality_at,
    prepare_image,
    voi_to_window,
    window_to_voi,
)
from viewer.state.view_state import Orientation, ViewState, WindowLevel, WindowPreset


def shown_by_levels(array: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """What an image item does with levels: linear map lo->0, hi->255, clipped (swapped
    levels give the inverted ramp)."""
    lo, hi = levels
    unit = (array.astype(np.float64) - lo) / (hi - lo)
    return np.clip(np.round(unit * 255.0), 0, 255)


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("slope,intercept", [(1.0, 0.0), (0.5, -1024.0), (-1.0, 4095.0)])
def test_levels_match_pipeline(photometric: str, slope: float, intercept: float) -> None:
    voi = VOI("W1", center=1000.0 * slope + intercept, width=1500.0 * abs(slope))
    rg = gradient_radiograph(photometric=photometric, slope=slope, intercept=intercept, vois=(voi,))
    prepared = prepare_image(rg)
    assert prepared.voi == voi
    plan = make_plan(prepared, voi_to_window(voi), voi, user_invert=False)
    assert not plan.fixed
    expected = display_image(rg, voi).astype(np.float64)
    got = shown_by_levels(plan.array, plan.levels)
    assert np.abs(got - expected).max() <= 2.0


def test_monochrome1_bright_where_stored_low_and_user_invert_flips() -> None:
    rg = gradient_radiograph(photometric="MONOCHROME1")
    prepared = prepare_image(rg)
    window = voi_to_window(prepared.voi)
    plan = make_plan(prepared, window, prepared.voi, user_invert=False)
    shown = shown_by_levels(plan.array, plan.levels)
    assert shown[:, 0].mean() > shown[:, -1].mean()  # low stored value -> white
    inverted = make_plan(prepared, window, prepared.voi, user_invert=True)
    shown_inv = shown_by_levels(inverted.array, inverted.levels)
    assert shown_inv[:, 0].mean() < shown_inv[:, -1].mean()
    assert np.abs((255 - shown_inv) - shown).max() <= 1.0


def test_voi_lut_table_goes_through_full_pipeline() -> None:
    table = np.linspace(0, 255, 4096).astype(np.uint16)[::-1].copy()
    voi = VOI("Table", lut=table, first_mapped=0, bits=8)
    rg = gradient_radiograph(vois=(voi,))
    prepared = prepare_image(rg)
    plan = make_plan(prepared, voi_to_window(voi), voi, user_invert=False)
    assert plan.fixed and plan.array.dtype == np.uint8
    np.testing.assert_array_equal(plan.array, display_image(rg, voi))


def test_colour_is_shown_as_is() -> None:
    rgb = np.zeros((8, 9, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    from viewer.core.radiograph import Radiograph

    prepared = prepare_image(Radiograph(pixels=rgb, photometric="RGB", bits_stored=8))
    plan = make_plan(prepared, None, None, user_invert=False)
    assert plan.fixed and plan.levels == (0.0, 255.0)
    np.testing.assert_array_equal(plan.array, rgb)


def test_modality_at_uses_rescale_and_lut() -> None:
    rg = gradient_radiograph(slope=2.0, intercept=-10.0)
    assert modality_at(rg, 100) == 190.0
    from dataclasses import replace

    from viewer.core.radiograph import ModalityLUT

    lut_rg = replace(rg, modality_lut=ModalityLUT(lut=np.array([5, 6, 7]), first_mapped=10))
    assert modality_at(lut_rg, 11) == 6.0
    assert modality_at(lut_rg, 99) == 7.0  # clamped to the last entry


def test_window_round_trip_and_presets() -> None:
    w = WindowLevel(40.0, 400.0, "Soft", "user")
    voi = window_to_voi(w)
    assert (voi.center, voi.width, voi.explanation) == (40.0, 400.0, "Soft")
    assert voi_to_window(voi) == WindowLevel(40.0, 400.0, "Soft", "user")
    assert w.dragged(10, -500).width == 1.0  # never below 1
    preset = WindowPreset("Lung | wide", -600.0, 1500.0)
    assert WindowPreset.from_text(preset.to_text()) == preset
    assert WindowPreset.from_text("broken") is None
    assert WindowPreset.from_text("x|1|0") is None


def test_view_state_notifies_changes_once() -> None:
    state = ViewState()
    seen: list[str] = []
    state.subscribe(seen.append)
    state.set_orientation(state.orientation.rotated(1))
    state.set_orientation(state.orientation)  # unchanged: no notification
    state.set_invert(True)
    state.set_window(WindowLevel(1, 2))
    state.reset_view()
    assert seen == ["orientation", "invert", "window", "orientation", "invert"]
    assert state.orientation == Orientation() and not state.invert
    assert Orientation().rotated(-1).quarter_turns == 3
