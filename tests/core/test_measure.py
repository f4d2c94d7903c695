"""Measurements without Qt: spacing rules, calibration, angles, Cobb, ROI masks and statistics
in modality units, identity keys, serialisation, export rows and the per-image store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from viewer.core.measure import (
    EXPORT_COLUMNS, ImageMeasurements, Measurement, Scale, calibration_mm_per_px, cobb_deg,
    evaluate, export_rows, image_key, image_state_from_dict, image_state_to_dict, replace_item,
    resolve_scale, roi_mask, roi_stats, without,
)
from viewer.core.radiograph import ModalityLUT, Radiograph
from viewer.state.measurements import MeasurementStore, write_export


def column_ramp(rows: int = 40, cols: int = 50, slope: float = 2.0, intercept: float = -1024.0,
                spacing: tuple[float, float] | None = (0.5, 0.5),
                kind: str | None = "PixelSpacing", units: str = "HU") -> Radiograph:
    """Stored value = column index; modality = slope * column + intercept."""
    pixels = np.tile(np.arange(cols, dtype=np.uint16), (rows, 1))
    return Radiograph(pixels=pixels, bits_stored=12,
                      modality_lut=ModalityLUT(slope=slope, intercept=intercept, units=units),
                      spacing_mm=spacing, spacing_kind=kind)  # type: ignore[arg-type]


def test_scale_prefers_the_file_then_the_calibration_then_pixels() -> None:
    assert resolve_scale((0.2, 0.3), "PixelSpacing", 0.1) == Scale((0.2, 0.3), "PixelSpacing")
    det = resolve_scale((0.2, 0.2), "ImagerPixelSpacing", 0.1)
    assert det.kind == "ImagerPixelSpacing" and det.note == "ImagerPixelSpacing at detector"
    cal = resolve_scale(None, None, 0.25)
    assert cal == Scale((0.25, 0.25), "Calibration") and cal.note == "calibrated"
    assert resolve_scale(None, None, None) == Scale() and Scale().unit == "px"
    assert resolve_scale((0.0, 0.2), "PixelSpacing", None) == Scale()  # nonsense spacing
    assert resolve_scale(None, None, float("nan")) == Scale()


def test_calibration_by_a_known_length() -> None:
    assert calibration_mm_per_px(((0, 0), (30, 40)), 10.0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="positive"):
        calibration_mm_per_px(((0, 0), (30, 40)), 0.0)
    with pytest.raises(ValueError, match="one pixel"):
        calibration_mm_per_px(((5, 5), (5.2, 5.2)), 10.0)
    state = ImageMeasurements((Measurement("calibration", ((0, 0), (30, 40)), length_mm=10.0),))
    assert state.mm_per_px == pytest.approx(0.2)
    # a distance on the calibrated image: 100 px -> 20 mm, labelled as calibrated
    scale = resolve_scale(None, None, state.mm_per_px)
    v = evaluate(Measurement("distance", ((0, 0), (60, 80))), None, scale)
    assert v.value == pytest.approx(20.0) and v.label == "20.0 mm (calibrated)"


def test_distance_labels_say_which_spacing() -> None:
    p0, p1 = (0.0, 0.0), (40.0, 30.0)
    mm = math.hypot(40 * 0.25, 30 * 0.2)
    det = evaluate(Measurement("distance", (p0, p1)), None,
                   resolve_scale((0.2, 0.25), "ImagerPixelSpacing"))
    assert det.value == pytest.approx(mm) and det.unit == "mm"
    assert det.label == f"{mm:.1f} mm (ImagerPixelSpacing at detector)"
    assert evaluate(Measurement("distance", (p0, p1)), None,
                    resolve_scale((0.2, 0.25), "PixelSpacing")).label == f"{mm:.1f} mm (PixelSpacing)"
    assert evaluate(Measurement("distance", (p0, p1)), None, Scale()).label == "50.0 px (no pixel spacing)"


def test_angle_and_cobb() -> None:
    right = evaluate(Measurement("angle", ((10, 0), (0, 0), (0, 10))), None, Scale())
    assert right.value == pytest.approx(90.0) and right.label == "90.0\u00b0"
    # 45 degrees in pixels, but rows are 2 mm apart and columns 1 mm: atan(2) in mm space
    aniso = evaluate(Measurement("angle", ((10, 0), (0, 0), (10, 10))), None,
                     resolve_scale((2.0, 1.0), "PixelSpacing"))
    assert aniso.value == pytest.approx(math.degrees(math.atan(2.0)))
    assert cobb_deg(((0, 0), (10, 0)), ((0, 0), (10, 10))) == pytest.approx(45.0)
    # lines, not rays: the direction they were drawn in does not matter; never above 90
    tilted = (0.0, 0.0), (math.cos(math.radians(150)), math.sin(math.radians(150)))
    assert cobb_deg(((0, 0), (1, 0)), tilted) == pytest.approx(30.0)
    assert cobb_deg(((0, 0), (1, 0)), (tilted[1], tilted[0])) == pytest.approx(30.0)
    assert cobb_deg(((0, 0), (1, 0)), ((5, 5), (5, 9))) == pytest.approx(90.0)
    assert cobb_deg(((0, 0), (0, 0)), ((5, 5), (5, 9))) == 0.0
    v = evaluate(Measurement("cobb", ((0, 0), (10, 0), (0, 20), (10, 30))), None, Scale())
    assert v.value == pytest.approx(45.0) and v.label == "Cobb 45.0\u00b0"


def test_roi_masks_count_pixels_whose_centres_are_inside() -> None:
    rs, cs, mask = roi_mask("rect", (10, 10), (30, 20), (40, 50))
    assert (rs, cs) == (slice(10, 20), slice(10, 30)) and mask.all() and mask.sum() == 200
    # corners in any order give the same ROI
    assert roi_mask("rect", (30, 20), (10, 10), (40, 50))[2].sum() == 200
    # a half-pixel rectangle around one pixel centre takes that pixel only
    assert roi_mask("rect", (4.2, 4.2), (4.8, 4.8), (10, 10))[2].sum() == 1
    # clipped at the image's edges
    rs, cs, mask = roi_mask("rect", (-5, -5), (3, 2), (10, 10))
    assert mask.sum() == 6 and (rs.start, cs.start) == (0, 0)
    # the ellipse: centre-in test done independently, pixel by pixel
    p0, p1 = (3.0, 5.0), (41.0, 27.0)
    rs, cs, mask = roi_mask("ellipse", p0, p1, (40, 50))
    a, b, cx, cy = 19.0, 11.0, 22.0, 16.0
    expected = [(r, c) for r in range(40) for c in range(50)
                if ((c + 0.5 - cx) / a) ** 2 + ((r + 0.5 - cy) / b) ** 2 <= 1.0]
    got = [(r + rs.start, c + cs.start) for r, c in zip(*np.nonzero(mask))]
    assert sorted(got) == sorted(expected)
    assert abs(len(expected) - math.pi * a * b) / (math.pi * a * b) < 0.02
    assert roi_mask("ellipse", (3, 3), (3, 9), (10, 10))[2].sum() == 0  # no width
    with pytest.raises(ValueError):
        roi_mask("arrow", (0, 0), (1, 1), (10, 10))


def test_roi_statistics_in_modality_units_and_area_in_mm2() -> None:
    """RescaleSlope 2, Intercept -1024, PixelSpacing 0.5 mm: a 20 x 10 px rectangle over
    columns 10..29 holds modality values 2c - 1024, ten of each."""
    rg = column_ramp()
    scale = resolve_scale(rg.spacing_mm, rg.spacing_kind)
    st = roi_stats(rg, "rect", (10, 10), (30, 20), scale)
    assert st.count == 200
    assert st.mean == pytest.approx(2 * 19.5 - 1024)  # -985
    assert (st.minimum, st.maximum) == (2 * 10 - 1024, 2 * 29 - 1024)
    # population variance of 20 consecutive integers is (20^2 - 1) / 12; sample SD (n - 1)
    sd = 2 * math.sqrt((20 ** 2 - 1) / 12 * 200 / 199)
    assert st.sd == pytest.approx(sd)
    assert st.area == pytest.approx(20 * 10 * 0.25) and st.area_unit == "mm\u00b2"
    v = evaluate(Measurement("rect", ((10, 10), (30, 20))), rg, scale)
    assert v.value == pytest.approx(-985.0) and v.unit == "HU"
    assert "mean -985.0 HU" in v.label and "area 50.0 mm\u00b2" in v.label and "n = 200 px" in v.label
    # without spacing: px², and raw stored values when the file does not rescale
    raw = column_ramp(slope=1.0, intercept=0.0, spacing=None, kind=None, units="")
    st2 = roi_stats(raw, "ellipse", (10, 10), (30, 30), resolve_scale(None, None))
    assert st2.area == pytest.approx(math.pi * 100) and st2.area_unit == "px\u00b2"
    assert st2.mean == pytest.approx(19.5) and st2.units == ""
    # the ellipse's statistics are those of its own pixels
    _, cs, mask = roi_mask("ellipse", (10, 10), (30, 30), (40, 50))
    cols = np.nonzero(mask)[1] + cs.start
    assert st2.count == mask.sum() and st2.sd == pytest.approx(np.std(cols, ddof=1))
    # an ROI outside the image: no pixels, no crash
    empty = roi_stats(rg, "rect", (60, 60), (70, 70), scale)
    assert empty.count == 0 and math.isnan(empty.mean)
    assert "mean -" in evaluate(Measurement("rect", ((60, 60), (70, 70))), rg, scale).label


def test_image_key_is_stable_and_not_identifying() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    key = image_key(uid, "/data/patient/file.dcm", 0)
    assert key == image_key(uid, "/elsewhere/copy.dcm", 0)  # the UID decides, not the path
    assert key != image_key(uid, "", 1) and len(key) == 64 and uid not in key
    assert image_key("", "/a.png") != image_key("", "/b.png")


def test_serialisation_round_trip_and_bad_input() -> None:
    items = (Measurement("distance", ((1.5, 2.25), (10, 20))),
             Measurement("text", ((3, 4),), "fracture?"),
             Measurement("calibration", ((0, 0), (0, 50)), length_mm=25.0),
             Measurement("cobb", ((0, 0), (1, 0), (0, 5), (1, 6))))
    doc = json.loads(json.dumps(image_state_to_dict(ImageMeasurements(items))))
    back = image_state_from_dict(doc)
    assert back.items == items
    doc["measurements"] += [{"kind": "laser", "points": [[0, 0]]},
                            {"kind": "angle", "points": [[0, 0], [1, 1]]},
                            {"kind": "distance", "points": [[0, "x"], [1, 1]]},
                            {"kind": "distance", "points": [[0, float("nan")], [1, 1]]},
                            {"kind": "calibration", "points": [[0, 0], [1, 1]], "length_mm": 5},
                            "nonsense"]
    assert image_state_from_dict(doc).items == items  # malformed ones skipped, one calibration
    with pytest.raises(ValueError):
        image_state_from_dict({"version": 1})
    # replacing, adding, removing
    moved = items[0].moved([(0, 0), (3, 4)])
    state = replace_item(ImageMeasurements(items), moved)
    assert state.items[0].points == ((0.0, 0.0), (3.0, 4.0)) and len(state.items) == 4
    recal = Measurement("calibration", ((0, 0), (0, 10)), length_mm=5.0)
    state = replace_item(state, recal)
    assert [m for m in state.items if m.kind == "calibration"] == [recal]
    assert len(without(state, [items[1].ident]).items) == 3


def test_export_rows_and_files(tmp_path: Path) -> None:
    rg = column_ramp()
    state = ImageMeasurements((Measurement("rect", ((10, 10), (30, 20))),
                               Measurement("text", ((1, 1),), "=cmd()"),
                               Measurement("distance", ((0, 0), (30, 40)))))
    rows = export_rows("k" * 64, state, rg, rg.spacing_mm, rg.spacing_kind)
    assert [r["type"] for r in rows] == ["Rectangle ROI", "Text", "Distance"]
    assert rows[0]["mean"] == pytest.approx(-985.0) and rows[0]["area"] == pytest.approx(50.0)
    assert rows[0]["pixels"] == 200 and rows[0]["spacing_kind"] == "PixelSpacing"
    assert rows[2]["value"] == pytest.approx(25.0) and rows[2]["unit"] == "mm"
    assert rows[2]["points_px"] == "0.00 0.00; 30.00 40.00"
    csv_path = write_export(rows, tmp_path / "m.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == ",".join(EXPORT_COLUMNS) and len(lines) == 4
    js = json.loads(write_export(rows, tmp_path / "m.json").read_text())
    assert js["measurements"][2]["value"] == pytest.approx(25.0)


def test_store_keeps_each_image_and_persists(tmp_path: Path) -> None:
    key_a, key_b = image_key("1.2.3", ""), image_key("1.2.4", "")
    store = MeasurementStore(tmp_path / "m")
    assert store.get(key_a).items == ()
    state = ImageMeasurements((Measurement("arrow", ((0, 0), (5, 5))),))
    store.put(key_a, state)
    files = list((tmp_path / "m").iterdir())
    assert [f.name for f in files] == [f"{key_a}.json"]
    text = files[0].read_text()
    assert "1.2.3" not in text and "arrow" in text
    assert MeasurementStore(tmp_path / "m").get(key_a) == state  # a new session
    assert store.get(key_b).items == ()
    store.put(key_a, ImageMeasurements())  # cleared: the file goes
    assert list((tmp_path / "m").iterdir()) == []
    (tmp_path / "m" / f"{key_b}.json").write_text("{not json")
    assert MeasurementStore(tmp_path / "m").get(key_b).items == ()  # unreadable: no crash
    # keys that are not hashes never become file names; no folder: memory only
    store.put("../escape", state)
    assert not (tmp_path / "escape.json").exists()
    memory = MeasurementStore()
    memory.put(key_a, state)
    assert memory.get(key_a) == state


@pytest.mark.parametrize("case", ["uint8", "int16-negative-slope", "uint16-lut", "float32", "rgb"])
def test_roi_statistics_agree_with_a_plain_computation(case: str) -> None:
    """Whatever the pixel type and modality transform, the ROI statistics equal numpy's on the
    modality image (the fast integer paths included)."""
    from viewer.core.windowing import modality_values

    rng = np.random.default_rng(3)
    mlut = ModalityLUT()
    if case == "uint8":
        pixels = rng.integers(0, 256, (60, 70)).astype(np.uint8)
    elif case == "int16-negative-slope":
        pixels = rng.integers(-2000, 3000, (60, 70)).astype(np.int16)
        mlut = ModalityLUT(slope=-0.5, intercept=100.0)
    elif case == "uint16-lut":
        # a few distinct values under a table that is not monotonic: values between them that
        # do not occur must not count as the minimum or maximum
        pixels = rng.choice(np.array([100, 150, 399], np.uint16), (60, 70))
        mlut = ModalityLUT(lut=((np.arange(300) * 37) % 1000).astype(np.uint16), first_mapped=120)
    elif case == "float32":
        pixels = rng.normal(0, 100, (60, 70)).astype(np.float32)
    else:
        pixels = rng.integers(0, 256, (60, 70, 3)).astype(np.uint8)
    rg = Radiograph(pixels=pixels, bits_stored=16, modality_lut=mlut,
                    photometric="RGB" if case == "rgb" else "MONOCHROME2")
    if case == "rgb":
        full = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    else:
        full = modality_values(rg).astype(np.float64)
    for kind, p0, p1 in (("rect", (3.2, 4.7), (50.5, 41.0)), ("ellipse", (2, 5), (66.5, 57))):
        rs, cs, mask = roi_mask(kind, p0, p1, pixels.shape[:2])
        expect = full[rs, cs][mask]
        st = roi_stats(rg, kind, p0, p1, Scale())
        assert st.count == expect.size
        assert st.mean == pytest.approx(expect.mean(), rel=1e-5, abs=1e-4)
        assert st.sd == pytest.approx(expect.std(ddof=1), rel=1e-4)
        assert (st.minimum, st.maximum) == pytest.approx((expect.min(), expect.max()), rel=1e-6)
