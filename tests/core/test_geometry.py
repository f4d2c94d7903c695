"""Pixel/mm geometry with anisotropic spacing."""

from __future__ import annotations

import math

import pytest

from viewer.core.geometry import (
    angle_deg,
    distance_mm,
    distance_px,
    mm_to_pixel,
    pixel_to_mm,
    polygon_area_mm2,
    polyline_length_mm,
    spacing_note,
)


def test_distance_uses_row_spacing_for_y_and_column_spacing_for_x():
    # spacing = (row 2.0 mm, column 1.0 mm): dx = 3 px * 1.0, dy = 4 px * 2.0
    assert distance_mm((0, 0), (3, 4), (2.0, 1.0)) == pytest.approx(math.sqrt(9 + 64))
    assert distance_px((0, 0), (3, 4)) == pytest.approx(5.0)


def test_pixel_mm_round_trip():
    p = pixel_to_mm((10, 20), (0.5, 0.25))
    assert p == pytest.approx((2.5, 10.0))
    assert mm_to_pixel(p, (0.5, 0.25)) == pytest.approx((10, 20))


def test_area_and_length():
    square = [(0, 0), (10, 0), (10, 10), (0, 10)]
    assert polygon_area_mm2(square, (0.5, 0.2)) == pytest.approx(10 * 0.2 * 10 * 0.5)
    assert polyline_length_mm(square, (1.0, 1.0)) == pytest.approx(30.0)


def test_angle():
    assert angle_deg((1, 0), (0, 0), (0, 1)) == pytest.approx(90.0)
    # with non-square pixels the same pixel triangle has a different angle in mm
    assert angle_deg((1, 0), (0, 0), (1, 1), (2.0, 1.0)) == pytest.approx(math.degrees(math.atan2(2, 1)))


@pytest.mark.parametrize("bad", [(0, 1), (1, -1), (float("nan"), 1)])
def test_invalid_spacing_raises(bad):
    with pytest.raises(ValueError):
        distance_mm((0, 0), (1, 1), bad)


def test_spacing_note_names_the_attribute():
    assert "Imager Pixel Spacing" in spacing_note("ImagerPixelSpacing")
    assert "pixels only" in spacing_note(None)
