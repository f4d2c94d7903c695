"""Measurements on a radiograph: geometry, ROI statistics, spacing rules and serialisation.

Qt-free (numpy + stdlib). Points are ``(x, y)`` = ``(column, row)`` in image pixel coordinates
as the canvas draws them: pixel ``(row r, column c)`` covers ``[c, c+1) x [r, r+1)``, so its
centre is at ``(c + 0.5, r + 0.5)`` (distances and angles do not depend on that choice; ROI
masks do, see :func:`roi_mask`).

Which spacing a length or an area uses (:func:`resolve_scale`): (0028,0030) Pixel Spacing, else
(0018,1164) Imager Pixel Spacing (at the detector) or (0018,2010) Nominal Scanned Pixel Spacing
as the radiograph carries them, else the user's calibration by a known length, else pixels.

ROI statistics (:func:`roi_stats`) are computed on modality values: stored values through the
(0028,3000) Modality LUT or (0028,1053) Rescale Slope / (0028,1052) Rescale Intercept, i.e. HU-like
values when the file rescales, raw stored values when it does not.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np

from viewer.core.geometry import Point, Spacing, angle_deg, distance_mm, distance_px
from viewer.core.grayscale import modality_values
from viewer.core.radiograph import Radiograph

__all__ = [
    "KINDS", "KIND_NAMES", "POINTS_NEEDED", "Kind", "Measurement", "ImageMeasurements",
    "MeasuredValue", "RoiStats", "Scale", "calibration_mm_per_px", "cobb_deg", "evaluate",
    "export_rows", "image_key", "image_state_from_dict", "image_state_to_dict",
    "measurement_from_dict", "measurement_to_dict", "replace_item", "resolve_scale", "roi_mask",
    "roi_stats", "roi_values", "without",
]

Kind = Literal["distance", "angle", "cobb", "rect", "ellipse", "arrow", "text", "calibration"]
KINDS: tuple[Kind, ...] = ("distance", "angle", "cobb", "rect", "ellipse", "arrow", "text",
                           "calibration")
KIND_NAMES: dict[str, str] = {
    "distance": "Distance", "angle": "Angle", "cobb": "Cobb angle", "rect": "Rectangle ROI",
    "ellipse": "Ellipse ROI", "arrow": "Arrow", "text": "Text", "calibration": "Calibration",
}
# Points that define each kind: angle = (arm end, vertex, arm end); Cobb = two lines.
POINTS_NEEDED: dict[str, int] = {
    "distance": 2, "angle": 3, "cobb": 4, "rect": 2, "ellipse": 2, "arrow": 2, "text": 1,
    "calibration": 2,
}
STATE_VERSION = 1
MAX_TEXT = 500  # characters kept of a text annotation


@dataclass(frozen=True)
class Measurement:
    """One drawn item. ``text``: a text annotation's words; ``length_mm``: the known length of
    a calibration line. ``ident`` is unique within an image."""

    kind: Kind
    points: tuple[Point, ...]
    text: str = ""
    length_mm: float | None = None
    ident: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def moved(self, points: Sequence[Point]) -> Measurement:
        """The same item with new points (an edit)."""
        return replace(self, points=tuple((float(x), float(y)) for x, y in points))


@dataclass(frozen=True)
class ImageMeasurements:
    """Everything measured on one image (frame): its items in drawing order. The calibration is
    the ``calibration`` item among them (at most one)."""

    items: tuple[Measurement, ...] = ()

    @property
    def calibration(self) -> Measurement | None:
        return next((m for m in self.items if m.kind == "calibration"), None)

    @property
    def mm_per_px(self) -> float | None:
        cal = self.calibration
        if cal is None or cal.length_mm is None:
            return None
        try:
            return calibration_mm_per_px(cal.points, cal.length_mm)
        except ValueError:
            return None


@dataclass(frozen=True)
class Scale:
    """The spacing measurements use: ``(row, column)`` mm per pixel and where it came from
    ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing", "Calibration"), or
    ``None`` (pixels)."""

    spacing: Spacing | None = None
    kind: str | None = None

    @property
    def unit(self) -> str:
        return "px" if self.spacing is None else "mm"

    @property
    def note(self) -> str:
        """What a length means, as shown next to it."""
        if self.spacing is None:
            return "no pixel spacing"
        if self.kind == "Calibration":
            return "calibrated"
        kind = self.kind or "PixelSpacing"
        return f"{kind} at detector" if kind == "ImagerPixelSpacing" else kind


def resolve_scale(spacing_mm: Spacing | None, spacing_kind: str | None,
                  mm_per_px: float | None = None) -> Scale:
    """The file's spacing when it has one, else the calibration (isotropic), else pixels."""
    if spacing_mm is not None and all(float(s) > 0 and math.isfinite(float(s)) for s in spacing_mm):
        return Scale((float(spacing_mm[0]), float(spacing_mm[1])), spacing_kind or "PixelSpacing")
    if mm_per_px is not None and mm_per_px > 0 and math.isfinite(mm_per_px):
        return Scale((mm_per_px, mm_per_px), "Calibration")
    return Scale()


def calibration_mm_per_px(points: Sequence[Point], length_mm: float) -> float:
    """mm per pixel from a line drawn over an object of known ``length_mm``."""
    if not (math.isfinite(length_mm) and length_mm > 0):
        raise ValueError("the known length must be a positive number of mm")
    px = distance_px(points[0], points[1])
    if px < 1.0:
        raise ValueError("the calibration line must be at least one pixel long")
    return float(length_mm) / px


def cobb_deg(line1: tuple[Point, Point], line2: tuple[Point, Point],
             spacing: Spacing | None = None) -> float:
    """The angle between two lines (not rays), in degrees [0, 90], in mm space with
    ``spacing`` (correct for non-square pixels)."""
    sx, sy = (1.0, 1.0) if spacing is None else (float(spacing[1]), float(spacing[0]))
    ux, uy = (line1[1][0] - line1[0][0]) * sx, (line1[1][1] - line1[0][1]) * sy
    vx, vy = (line2[1][0] - line2[0][0]) * sx, (line2[1][1] - line2[0][1]) * sy
    nu, nv = math.hypot(ux, uy), math.hypot(vx, vy)
    if nu == 0 or nv == 0:
        return 0.0
    cos = min(1.0, abs(ux * vx + uy * vy) / (nu * nv))
    return math.degrees(math.acos(cos))


# ------------------------------------------------------------------------------------------
# ROI masks and statistics
# ------------------------------------------------------------------------------------------


def roi_mask(kind: str, p0: Point, p1: Point, shape: tuple[int, int]
             ) -> tuple[slice, slice, np.ndarray]:
    """The pixels of a rectangle or ellipse ROI spanned by corners ``p0`` and ``p1``: the rows
    and columns of its bounding box (clipped to the image of ``shape``) and a boolean mask over
    that box. A pixel belongs to the ROI when its centre lies inside the shape (on the edge
    counts for a rectangle)."""
    rows, cols = int(shape[0]), int(shape[1])
    x0, x1 = sorted((float(p0[0]), float(p1[0])))
    y0, y1 = sorted((float(p0[1]), float(p1[1])))
    if kind == "rect":  # exactly the pixels whose centres c + 0.5 lie in [x0, x1]
        c0, c1 = max(0, math.ceil(x0 - 0.5)), min(cols, math.floor(x1 - 0.5) + 1)
        r0, r1 = max(0, math.ceil(y0 - 0.5)), min(rows, math.floor(y1 - 0.5) + 1)
        rs, cs = slice(r0, max(r0, r1)), slice(c0, max(c0, c1))
        return rs, cs, np.ones((rs.stop - rs.start, cs.stop - cs.start), dtype=bool)
    c0, c1 = max(0, math.floor(x0)), min(cols, math.ceil(x1))
    r0, r1 = max(0, math.floor(y0)), min(rows, math.ceil(y1))
    rs, cs = slice(r0, max(r0, r1)), slice(c0, max(c0, c1))
    yc = np.arange(rs.start, rs.stop, dtype=np.float64)[:, None] + 0.5
    xc = np.arange(cs.start, cs.stop, dtype=np.float64)[None, :] + 0.5
    if kind == "ellipse":
        a, b = (x1 - x0) / 2.0, (y1 - y0) / 2.0
        if a <= 0 or b <= 0:
            mask = np.zeros((yc.size, xc.size), dtype=bool)
        else:
            mask = ((xc - (x0 + a)) / a) ** 2 + ((yc - (y0 + b)) / b) ** 2 <= 1.0
    else:
        raise ValueError(f"not an ROI kind: {kind!r}")
    return rs, cs, np.broadcast_to(mask, (yc.size, xc.size)).copy()


@dataclass(frozen=True)
class RoiStats:
    """Statistics of an ROI's modality values, its pixel count and its (geometric) area."""

    count: int
    mean: float
    sd: float
    minimum: float
    maximum: float
    area: float
    area_unit: str  # "mm²" or "px²"
    units: str  # modality units ("HU", ...) or "" for raw values


def roi_values(rg: Radiograph, rows: slice, cols: slice) -> np.ndarray:
    """Modality values of a crop (float32); colour images give their luma (Rec. 601)."""
    crop = replace(rg, pixels=rg.pixels[rows, cols])
    if rg.is_colour:
        rgb = crop.pixels.astype(np.float32)
        return cast(np.ndarray, rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
    return modality_values(crop)


def roi_stats(rg: Radiograph, kind: str, p0: Point, p1: Point, scale: Scale) -> RoiStats:
    """Mean, sample standard deviation (n - 1), min and max of the modality values inside the
    ROI, with the shape's area: mm² with a spacing (the ellipse pi*a*b, the rectangle w*h),
    px² without."""
    rs, cs, mask = roi_mask(kind, p0, p1, (rg.rows, rg.cols))
    crop = rg.pixels[rs, cs]
    w, h = abs(p1[0] - p0[0]), abs(p1[1] - p0[1])
    area_px = math.pi * w * h / 4.0 if kind == "ellipse" else w * h
    if scale.spacing is not None:
        area, unit = area_px * scale.spacing[0] * scale.spacing[1], "mm\u00b2"
    else:
        area, unit = area_px, "px\u00b2"
    units = "luma" if rg.is_colour else rg.modality_lut.units
    if not mask.any():
        nan = float("nan")
        return RoiStats(0, nan, nan, nan, nan, area, unit, units)
    if not rg.is_colour and crop.dtype.kind in "ui" and crop.dtype.itemsize <= 2:
        # a rectangle's mask is its whole box: no copy of the pixels
        count, mean, sd, lo, hi = _integer_stats(rg, crop if kind == "rect" else crop[mask])
        return RoiStats(count, mean, sd, lo, hi, area, unit, units)
    values = roi_values(rg, rs, cs)[mask].astype(np.float64)
    sd = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return RoiStats(int(values.size), float(values.mean()), sd, float(values.min()),
                    float(values.max()), area, unit, units)


def _integer_stats(rg: Radiograph, stored: np.ndarray) -> tuple[int, float, float, float, float]:
    """Count, mean, sample SD, min and max of the modality values of integer ``stored`` values.

    With Rescale Slope/Intercept the moments of the stored values are exact integer sums
    (int64) mapped through the linear transform; with a Modality LUT each distinct stored value
    goes through the table once (histogram). An ROI over a whole 2-3 MP film costs ~10 ms
    instead of ~90 ms for a float copy of its pixels."""
    n = int(stored.size)
    lo, hi = int(stored.min()), int(stored.max())
    mlut = rg.modality_lut
    if mlut.lut is None:
        total = int(stored.sum(dtype=np.int64))
        flat = stored.reshape(-1) if stored.flags.c_contiguous else stored
        axes = "i,i->" if flat.ndim == 1 else "ij,ij->"
        squares = int(np.einsum(axes, flat, flat, dtype=np.int64))
        mean_s = total / n
        var_s = (n * squares - total * total) / (n * (n - 1)) if n > 1 else 0.0
        slope, intercept = float(mlut.slope), float(mlut.intercept)
        ends = sorted((lo * slope + intercept, hi * slope + intercept))
        return (n, mean_s * slope + intercept, abs(slope) * math.sqrt(max(var_s, 0.0)),
                ends[0], ends[1])
    counts = np.bincount((stored.astype(np.int32) - lo).reshape(-1)).astype(np.float64)
    table = replace(rg, pixels=np.arange(lo, lo + counts.size, dtype=np.int32)
                    .astype(stored.dtype)[None, :])
    modality = modality_values(table)[0].astype(np.float64)
    mean = float((counts * modality).sum() / n)
    var = float((counts * (modality - mean) ** 2).sum() / (n - 1)) if n > 1 else 0.0
    present = modality[counts > 0]
    return n, mean, math.sqrt(max(var, 0.0)), float(present.min()), float(present.max())


# ------------------------------------------------------------------------------------------
# Values and labels
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredValue:
    """What an item measures: its main ``value`` and ``unit`` (``None`` for arrows and text),
    the ``label`` drawn next to it (may have several lines) and ROI statistics."""

    value: float | None
    unit: str
    label: str
    stats: RoiStats | None = None


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    return f"{v:.0f}" if abs(v) >= 100000 else f"{v:.1f}"


def evaluate(m: Measurement, rg: Radiograph | None, scale: Scale) -> MeasuredValue:
    """The value and label of ``m`` on ``rg`` with ``scale`` (see :func:`resolve_scale`)."""
    p = m.points
    if m.kind in ("distance", "calibration"):
        if scale.spacing is None:
            value, unit = distance_px(p[0], p[1]), "px"
        else:
            value, unit = distance_mm(p[0], p[1], scale.spacing), "mm"
        if m.kind == "calibration":
            known = m.length_mm if m.length_mm is not None else float("nan")
            return MeasuredValue(known, "mm", f"calibration {known:g} mm")
        return MeasuredValue(value, unit, f"{value:.1f} {unit} ({scale.note})")
    if m.kind == "angle":
        deg = angle_deg(p[0], p[1], p[2], scale.spacing)
        return MeasuredValue(deg, "\u00b0", f"{deg:.1f}\u00b0")
    if m.kind == "cobb":
        deg = cobb_deg((p[0], p[1]), (p[2], p[3]), scale.spacing)
        return MeasuredValue(deg, "\u00b0", f"Cobb {deg:.1f}\u00b0")
    if m.kind in ("rect", "ellipse"):
        if rg is None:
            return MeasuredValue(None, "", "")
        st = roi_stats(rg, m.kind, p[0], p[1], scale)
        units = f" {st.units}" if st.units else ""
        where = f" ({scale.note})" if scale.spacing is not None and scale.kind != "PixelSpacing" else ""
        label = (f"mean {_num(st.mean)}{units}  SD {_num(st.sd)}\n"
                 f"min {_num(st.minimum)}  max {_num(st.maximum)}\n"
                 f"area {_num(st.area)} {st.area_unit}{where}  n = {st.count} px")
        return MeasuredValue(st.mean, st.units, label, st)
    if m.kind == "text":
        return MeasuredValue(None, "", m.text)
    return MeasuredValue(None, "", "")  # arrow


# ------------------------------------------------------------------------------------------
# Identity and serialisation
# ------------------------------------------------------------------------------------------


def image_key(sop_instance_uid: str, source: str, frame: int = 0) -> str:
    """A stable, non-identifying key of one image frame: SHA-256 of its (0008,0018) SOP Instance
    UID, or of its file identity (path, zip member) when it has none."""
    ident = f"sop:{sop_instance_uid}" if sop_instance_uid else f"file:{source}"
    return hashlib.sha256(f"{ident}|frame:{int(frame)}".encode("utf-8", "surrogatepass")).hexdigest()


def measurement_to_dict(m: Measurement) -> dict[str, Any]:
    out: dict[str, Any] = {"id": m.ident, "kind": m.kind,
                           "points": [[round(x, 3), round(y, 3)] for x, y in m.points]}
    if m.text:
        out["text"] = m.text
    if m.length_mm is not None:
        out["length_mm"] = m.length_mm
    return out


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("a coordinate is not a finite number")
    return number


def measurement_from_dict(d: Mapping[str, Any]) -> Measurement:
    """Inverse of :func:`measurement_to_dict`; ``ValueError`` for anything malformed."""
    kind = d.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown measurement kind {kind!r}")
    raw = d.get("points")
    if not isinstance(raw, list) or len(raw) != POINTS_NEEDED[kind]:
        raise ValueError(f"a {kind} needs {POINTS_NEEDED[kind]} points")
    try:
        points = tuple((_finite(pt[0]), _finite(pt[1])) for pt in raw)
    except (TypeError, IndexError) as exc:
        raise ValueError("points must be [x, y] pairs") from exc
    text = str(d.get("text", ""))[:MAX_TEXT]
    length = d.get("length_mm")
    length_mm = None if length is None else _finite(length)
    if kind == "calibration" and not (length_mm is not None and length_mm > 0):
        raise ValueError("a calibration needs a positive length_mm")
    ident = str(d.get("id") or uuid.uuid4().hex[:12])
    return Measurement(cast(Kind, kind), points, text, length_mm, ident)


def image_state_to_dict(state: ImageMeasurements) -> dict[str, Any]:
    """JSON-ready form: the version and the items (no patient data: points, kinds, the user's
    own text and calibration length only)."""
    return {"version": STATE_VERSION, "measurements": [measurement_to_dict(m) for m in state.items]}


def image_state_from_dict(d: Mapping[str, Any]) -> ImageMeasurements:
    """Inverse of :func:`image_state_to_dict`; malformed items are skipped, a malformed
    document is a ``ValueError``."""
    if not isinstance(d, Mapping) or not isinstance(d.get("measurements"), list):
        raise ValueError("not a measurements document")
    items: list[Measurement] = []
    seen: set[str] = set()
    for raw in d["measurements"]:
        try:
            m = measurement_from_dict(raw)
        except (ValueError, AttributeError, TypeError):
            continue
        if m.ident in seen or (m.kind == "calibration" and any(i.kind == "calibration" for i in items)):
            continue
        seen.add(m.ident)
        items.append(m)
    return ImageMeasurements(tuple(items))


EXPORT_COLUMNS = ("image", "id", "type", "value", "unit", "spacing_kind", "label", "mean", "sd",
                  "min", "max", "pixels", "area", "area_unit", "points_px")


def export_rows(key: str, state: ImageMeasurements, rg: Radiograph | None,
                spacing_mm: Spacing | None, spacing_kind: str | None) -> list[dict[str, Any]]:
    """One row per item for CSV/JSON export: ``image`` is the non-identifying
    :func:`image_key`, points are image pixels ``x y`` separated by ``;``."""
    scale = resolve_scale(spacing_mm, spacing_kind, state.mm_per_px)
    rows: list[dict[str, Any]] = []
    for m in state.items:
        v = evaluate(m, rg, scale)
        st = v.stats
        rows.append({
            "image": key, "id": m.ident, "type": KIND_NAMES[m.kind],
            "value": "" if v.value is None else round(v.value, 4), "unit": v.unit,
            "spacing_kind": scale.kind or "none", "label": v.label.replace("\n", "; "),
            "mean": "" if st is None else round(st.mean, 4),
            "sd": "" if st is None else round(st.sd, 4),
            "min": "" if st is None else st.minimum, "max": "" if st is None else st.maximum,
            "pixels": "" if st is None else st.count,
            "area": "" if st is None else round(st.area, 4),
            "area_unit": "" if st is None else st.area_unit,
            "points_px": "; ".join(f"{x:.2f} {y:.2f}" for x, y in m.points),
        })
    return rows


def replace_item(state: ImageMeasurements, item: Measurement) -> ImageMeasurements:
    """``state`` with ``item`` replacing the one with its id, or added (a new calibration
    replaces the old one)."""
    items = list(state.items)
    for i, m in enumerate(items):
        if m.ident == item.ident:
            items[i] = item
            return ImageMeasurements(tuple(items))
    if item.kind == "calibration":
        items = [m for m in items if m.kind != "calibration"]
    return ImageMeasurements(tuple(items) + (item,))


def without(state: ImageMeasurements, idents: Iterable[str]) -> ImageMeasurements:
    drop = set(idents)
    return ImageMeasurements(tuple(m for m in state.items if m.ident not in drop))
