"""Pixel <-> millimetre geometry for measurements on a radiograph.

Points are ``(x, y)`` = ``(column, row)`` in image pixel coordinates (the scene coordinates of a
row-major image widget), with pixel centres at integer positions. Spacing follows DICOM order:
``(row_spacing, column_spacing)`` in mm, i.e. the two values of (0028,0030) Pixel Spacing or
(0018,1164) Imager Pixel Spacing: the first is the distance between rows (vertical, y), the
second between columns (horizontal, x).

Imager Pixel Spacing is measured at the detector; for a projection radiograph, anatomy is
magnified by the beam divergence, so distances computed from it are at the detector plane, not
true anatomical size. :func:`spacing_note` gives the sentence to show next to a measurement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "Point",
    "Spacing",
    "angle_deg",
    "distance_mm",
    "distance_px",
    "mm_to_pixel",
    "pixel_to_mm",
    "polygon_area_mm2",
    "polyline_length_mm",
    "spacing_note",
]

Point = tuple[float, float]
Spacing = tuple[float, float]


def _check(spacing: Spacing) -> tuple[float, float]:
    row_sp, col_sp = float(spacing[0]), float(spacing[1])
    if not (row_sp > 0 and col_sp > 0 and math.isfinite(row_sp) and math.isfinite(col_sp)):
        raise ValueError(f"pixel spacing must be two positive numbers, got {spacing!r}")
    return row_sp, col_sp


def pixel_to_mm(point: Point, spacing: Spacing) -> Point:
    """Pixel ``(x, y)`` -> ``(x_mm, y_mm)`` from the image origin (top-left pixel centre)."""
    row_sp, col_sp = _check(spacing)
    return float(point[0]) * col_sp, float(point[1]) * row_sp


def mm_to_pixel(point_mm: Point, spacing: Spacing) -> Point:
    """Inverse of :func:`pixel_to_mm`."""
    row_sp, col_sp = _check(spacing)
    return float(point_mm[0]) / col_sp, float(point_mm[1]) / row_sp


def distance_px(p0: Point, p1: Point) -> float:
    """Euclidean distance in pixels."""
    return math.hypot(float(p1[0]) - float(p0[0]), float(p1[1]) - float(p0[1]))


def distance_mm(p0: Point, p1: Point, spacing: Spacing) -> float:
    """Distance in mm between two pixel points, honouring anisotropic spacing."""
    row_sp, col_sp = _check(spacing)
    dx = (float(p1[0]) - float(p0[0])) * col_sp
    dy = (float(p1[1]) - float(p0[1])) * row_sp
    return math.hypot(dx, dy)


def polyline_length_mm(points: Sequence[Point], spacing: Spacing) -> float:
    """Length in mm of an open polyline through ``points``."""
    return sum(distance_mm(a, b, spacing) for a, b in zip(points, points[1:]))


def polygon_area_mm2(points: Sequence[Point], spacing: Spacing) -> float:
    """Area in mm² of a simple closed polygon (shoelace formula on mm coordinates)."""
    if len(points) < 3:
        return 0.0
    mm = [pixel_to_mm(p, spacing) for p in points]
    acc = 0.0
    for (x0, y0), (x1, y1) in zip(mm, mm[1:] + mm[:1]):
        acc += x0 * y1 - x1 * y0
    return abs(acc) / 2.0


def angle_deg(p0: Point, vertex: Point, p1: Point, spacing: Spacing | None = None) -> float:
    """Angle at ``vertex`` between the rays to ``p0`` and ``p1``, in degrees [0, 180].

    With ``spacing`` the angle is measured in mm space (correct for non-square pixels).
    """
    sx, sy = (1.0, 1.0)
    if spacing is not None:
        row_sp, col_sp = _check(spacing)
        sx, sy = col_sp, row_sp
    ax, ay = (p0[0] - vertex[0]) * sx, (p0[1] - vertex[1]) * sy
    bx, by = (p1[0] - vertex[0]) * sx, (p1[1] - vertex[1]) * sy
    na, nb = math.hypot(ax, ay), math.hypot(bx, by)
    if na == 0 or nb == 0:
        return 0.0
    cos = max(-1.0, min(1.0, (ax * bx + ay * by) / (na * nb)))
    return math.degrees(math.acos(cos))


def spacing_note(kind: str | None) -> str:
    """User-facing sentence on what a mm measurement means for a spacing attribute."""
    if kind == "PixelSpacing":
        return "mm from (0028,0030) Pixel Spacing (calibrated to the patient)"
    if kind == "ImagerPixelSpacing":
        return ("mm from (0018,1164) Imager Pixel Spacing: at the detector, "
                "includes geometric magnification")
    if kind == "NominalScannedPixelSpacing":
        return "mm from (0018,2010) Nominal Scanned Pixel Spacing (digitised film)"
    return "no pixel spacing in the file: measurements in pixels only"


_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}


def opposite_direction(direction: str) -> str:
    """The patient direction opposite to ``direction`` ("LF" -> "RH")."""
    return "".join(_OPPOSITE.get(c, c) for c in direction)


def edge_markers(orientation: tuple[str, str], quarter_turns: int = 0, flip_h: bool = False,
                 flip_v: bool = False) -> dict[str, str]:
    """Patient directions at the screen's right/left/bottom/top edges for an image whose
    (0020,0020) Patient Orientation is ``(row, column)``, shown turned ``quarter_turns``
    clockwise and then flipped (the canvas's order)."""
    row, col = orientation
    # directions at the image's own edges
    right, left, bottom, top = row, opposite_direction(row), col, opposite_direction(col)
    for _ in range(quarter_turns % 4):  # clockwise: top -> right -> bottom -> left -> top
        right, bottom, left, top = top, right, bottom, left
    if flip_h:
        left, right = right, left
    if flip_v:
        top, bottom = bottom, top
    return {"right": right, "left": left, "bottom": bottom, "top": top}
