"""Viewports side by side (issue 16): 1x1 / 1x2 / 2x2 layouts, the active viewport and the
panels that follow it, linked zoom/pan and window, the different-patient warning and a decode
failure in one viewport. Real widgets offscreen, real files from the shared data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRectF, Qt

from tests import dicom_factory
from tests.inference.tiny_models import make_model_set
from tests.ui.test_ai_features import _analyse, _chest_like
from viewer.state.view_state import WindowLevel
from viewer.ui.viewports import DIFFERENT_PATIENTS, map_view, map_window, patient_warning


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_set(tmp_path_factory.mktemp("vp_models") / "chest")


def _write(folder: Path, name: str, patient: str, rows: int = 96, cols: int = 112,
           seed: int = 0, divide: int = 1, study: str = "") -> Path:
    study = study or f"1.2.826.0.1.3680043.8.498.7.{len(patient)}{seed}"
    return dicom_factory.write_dicom(
        folder / f"{name}.dcm", _chest_like(rows, cols, seed=seed) // divide, bits_stored=12,
        PatientName=f"{patient}^Test", PatientID=patient, BodyPartExamined="CHEST",
        StudyInstanceUID=study, SeriesInstanceUID=f"{study}.1", InstanceNumber=seed + 1)


def _open(qtbot: Any, window: Any, paths: list[Path]) -> None:
    with qtbot.waitSignal(window.sig_image_displayed, timeout=60000):
        window.open_paths([str(p) for p in paths])
    qtbot.waitUntil(lambda: len(window.library.records) == len(paths), timeout=60000)


def _record(window: Any, name: str) -> Any:
    return next(r for r in window.library.records if Path(r.path).name == name)


def _click(qtbot: Any, vp: Any) -> None:
    target = vp.canvas.view.viewport()
    qtbot.mouseClick(target, Qt.MouseButton.LeftButton, pos=QPoint(target.width() // 2, 10))


def _show(qtbot: Any, window: Any, record: Any) -> None:
    """Load ``record`` into the active viewport and wait until it is displayed."""
    with qtbot.waitSignal(window.sig_image_displayed, timeout=60000,
                          check_params_cb=lambda r, _p: r is record):
        window.images.show(record)


def test_map_view_is_relative() -> None:
    # the left half of a 100x50 image at full height -> the left half of a 200x400 image
    xr, yr = map_view(QRectF(0, 0, 100, 50), ((0.0, 50.0), (0.0, 50.0)), QRectF(0, 0, 200, 400))
    assert xr == pytest.approx((0.0, 100.0)) and yr == pytest.approx((0.0, 400.0))
    # identity when the images are the same
    xr, yr = map_view(QRectF(0, 0, 64, 64), ((10.0, 30.0), (5.0, 25.0)), QRectF(0, 0, 64, 64))
    assert xr == pytest.approx((10.0, 30.0)) and yr == pytest.approx((5.0, 25.0))


def test_map_window_same_units_or_relative() -> None:
    from tests.ui.helpers import gradient_radiograph
    from viewer.core.radiograph import ModalityLUT
    from viewer.state.display_plan import prepare_image

    a = prepare_image(gradient_radiograph())
    b = prepare_image(gradient_radiograph(slope=2.0))  # same (unknown) units and bit depth
    w = WindowLevel(1000.0, 400.0, "Manual", "user")
    assert map_window(w, a, b) == w
    hu = gradient_radiograph(slope=2.0, intercept=-1000.0)
    hu = replace(hu, modality_lut=ModalityLUT(slope=2.0, intercept=-1000.0, units="HU"))
    c = prepare_image(hu)
    mapped = map_window(w, a, c)
    (alo, ahi), (clo, chi) = a.value_range, c.value_range
    assert (mapped.center - clo) / (chi - clo) == pytest.approx((w.center - alo) / (ahi - alo))
    assert mapped.width / (chi - clo) == pytest.approx(w.width / (ahi - alo))


def test_patient_warning_rules() -> None:
    class R:
        def __init__(self, pid: str, name: str) -> None:
            self.patient_id, self.patient_name = pid, name

    assert patient_warning([R("1", "A"), R("1", "A")]) == ""
    assert patient_warning([R("1", "A")]) == ""
    assert patient_warning([R("1", "A"), R("2", "B")]) == DIFFERENT_PATIENTS
    assert "not identified" in patient_warning([R("1", "A"), R("", "")])


def test_layouts_from_the_actions_and_the_active_frame(qtbot: Any, make_window: Any) -> None:
    window = make_window()
    grid, a = window.viewports, window.action_map
    assert grid.count == 1 and a["layout_1x1"].isChecked()
    first = window.canvas
    a["layout_1x2"].trigger()
    assert [vp.isVisible() for vp in grid.viewports] == [True, True]
    assert a["layout_1x2"].isChecked() and not a["layout_1x1"].isChecked()
    assert window.canvas is first  # the active one stays
    a["layout_2x2"].trigger()
    qtbot.waitUntil(lambda: all(vp.isVisible() for vp in grid.viewports))
    assert len(grid.viewports) == 4
    # the four share the room: none is the whole central area
    qtbot.waitUntil(lambda: all(vp.width() < grid.width() * 0.6 and vp.height() < grid.height() * 0.6
                                for vp in grid.viewports), timeout=3000)
    _click(qtbot, grid.viewports[3])
    assert grid.active is grid.viewports[3] and window.canvas is grid.viewports[3].canvas
    assert grid.viewports[3].active and not grid.viewports[0].active
    assert grid.viewports[3].styleSheet() != grid.viewports[0].styleSheet()  # highlighted
    a["next_viewport"].trigger()
    assert grid.active is grid.viewports[0]
    a["layout_1x1"].trigger()
    assert grid.count == 1 and not grid.viewports[1].isVisible()
    # Help > Keyboard shortcuts lists them (from the one table), and no key does two things
    text = window.shortcuts_text()
    assert "Ctrl+2" in text and "Link Window" in text
    from PySide6.QtGui import QAction

    seen: dict[str, str] = {}
    for action in window.findChildren(QAction):
        for key in action.shortcuts():
            name = key.toString()
            assert seen.setdefault(name, action.objectName()) == action.objectName(), name
    assert {"Ctrl+1", "Ctrl+2", "Ctrl+4", "Ctrl+Shift+Z", "Ctrl+Shift+W"} <= set(seen)


def test_two_real_films_panels_follow_the_active_viewport(qtbot: Any, make_window: Any,
                                                          shared_dicom: Path) -> None:
    chest, hip = shared_dicom / "RG1_J2KI.dcm", shared_dicom / "RG2_J2KI.dcm"
    if not (chest.exists() and hip.exists()):
        pytest.skip("RG1/RG2 J2K films not in the shared data")
    window = make_window()
    window.docks["header"].show()
    window.docks["header"].raise_()
    _open(qtbot, window, [chest, hip])
    grid = window.viewports
    r_chest, r_hip = _record(window, "RG1_J2KI.dcm"), _record(window, "RG2_J2KI.dcm")
    if window.images.current is not r_chest:
        _show(qtbot, window, r_chest)
    window.action_map["layout_1x2"].trigger()
    left, right = grid.viewports[:2]
    _click(qtbot, right)
    assert grid.active is right and window.canvas.radiograph is None
    assert window.window_panel.prepared is None  # the empty viewport's panel
    _show(qtbot, window, r_hip)
    # each viewport has its own film, corner text and notice strip
    assert left.record is r_chest and right.record is r_hip
    assert (left.canvas.radiograph.rows, right.canvas.radiograph.rows) == (1955, 2140)
    assert "CHEST" in left.canvas.overlay_label.text() and "HIP" in right.canvas.overlay_label.text()
    assert left.canvas.notice_label.isVisible() and right.canvas.notice_label.isVisible()
    # the panels describe the active (right) one
    assert window.window_panel.prepared is right.canvas.prepared
    hip_window = right.state.window
    assert hip_window is not None and window.window_panel.center.value() == pytest.approx(hip_window.center)
    qtbot.waitUntil(lambda: window.header_view.model.rowCount() > 0, timeout=20000)
    # different patients (or not): the strip says what the records say
    same = (r_chest.patient_id, r_chest.patient_name) == (r_hip.patient_id, r_hip.patient_name)
    assert left.warning.isVisible() is (not same) and right.warning.isVisible() is (not same)
    # click the left one: the panels switch to the chest film
    _click(qtbot, left)
    assert grid.active is left and window.canvas is left.canvas
    assert window.window_panel.prepared is left.canvas.prepared
    chest_window = left.state.window
    assert chest_window is not None
    assert window.window_panel.center.value() == pytest.approx(chest_window.center)
    assert window.images.current is r_chest
    # a window change in the active viewport does not touch the other (not linked)
    window.view_state.set_window(WindowLevel(chest_window.center + 100, chest_window.width, "Manual", "user"))
    assert right.state.window == hip_window
    # back to 1x1: the active (left, chest) image stays on screen
    window.action_map["layout_1x1"].trigger()
    assert window.canvas.radiograph is not None and window.canvas.radiograph.rows == 1955
    assert grid.viewports[1].record is None and grid.viewports[1].canvas.prepared is None


def test_different_patient_warning_and_linked_window_and_zoom(qtbot: Any, make_window: Any,
                                                             tmp_path: Path) -> None:
    a_path = _write(tmp_path / "s", "aaa", "AAA", 96, 112, seed=1)
    # twice as tall, half the value range
    b_path = _write(tmp_path / "s", "bbb", "BBB", 192, 112, seed=2, divide=2)
    c_path = _write(tmp_path / "s", "ccc", "AAA", 96, 112, seed=3)  # same patient as a
    window = make_window()
    _open(qtbot, window, [a_path, b_path, c_path])
    grid = window.viewports
    ra, rb, rc = (_record(window, n) for n in ("aaa.dcm", "bbb.dcm", "ccc.dcm"))
    if window.images.current is not ra:
        _show(qtbot, window, ra)
    window.action_map["layout_1x2"].trigger()
    left, right = grid.viewports[:2]
    grid.set_active(right)
    _show(qtbot, window, rc)
    assert not left.warning.isVisible() and not right.warning.isVisible()  # one patient
    _show(qtbot, window, rb)
    assert left.warning.isVisible() and right.warning.isVisible()
    assert left.warning.text() == DIFFERENT_PATIENTS

    # unlinked: zoom and window stay in their viewport
    before = left.canvas.viewbox.viewRange()
    right.canvas.zoom(2.0)
    assert left.canvas.viewbox.viewRange() == before
    # linked zoom/pan: the same relative view (the image centre, half of it across)
    window.action_map["link_zoom"].setChecked(True)
    right.canvas.zoom(2.0)
    (x0, x1), (y0, y1) = right.canvas.viewbox.viewRange()
    (u0, u1), (v0, v1) = left.canvas.viewbox.viewRange()
    rrect = right.canvas.image_item.mapRectToParent(right.canvas.image_item.boundingRect())
    lrect = left.canvas.image_item.mapRectToParent(left.canvas.image_item.boundingRect())
    assert (u0 + u1) / 2 / lrect.width() == pytest.approx((x0 + x1) / 2 / rrect.width(), rel=0.02)
    assert (v0 + v1) / 2 / lrect.height() == pytest.approx((y0 + y1) / 2 / rrect.height(), rel=0.02)
    # pan the left one: the right one follows (zoom from either side)
    left.canvas.viewbox.translateBy(x=10.0)
    (x0, x1), _ = right.canvas.viewbox.viewRange()
    (u0, u1), _ = left.canvas.viewbox.viewRange()
    assert (x0 + x1) / 2 / rrect.width() == pytest.approx((u0 + u1) / 2 / lrect.width(), rel=0.02)

    # linked window: the same numbers (same units: both 12-bit CR without rescale)
    window.action_map["link_window"].setChecked(True)
    new = WindowLevel(1234.0, 567.0, "Manual", "user")
    right.state.set_window(new)
    assert left.state.window is not None
    assert (left.state.window.center, left.state.window.width) == (1234.0, 567.0)
    assert left.canvas.image_item.levels is not None
    # and unlinked again: no more
    window.action_map["link_window"].setChecked(False)
    right.state.set_window(WindowLevel(2000.0, 300.0, "Manual", "user"))
    assert left.state.window.center == 1234.0
    # a newly shown image is not a change for the others (it opens with its own window)
    window.action_map["link_window"].setChecked(True)
    kept, kept_view = left.state.window, left.canvas.viewbox.viewRange()
    _show(qtbot, window, rc)
    qtbot.wait(50)
    assert left.state.window == kept
    # the left one keeps its zoom and centre (its warning strip went: a little more height)
    (n0, n1), (m0, m1) = left.canvas.viewbox.viewRange()
    (k0, k1), (j0, j1) = kept_view
    assert (n1 - n0) == pytest.approx(k1 - k0, rel=0.02)
    assert ((n0 + n1) / 2, (m0 + m1) / 2) == pytest.approx(((k0 + k1) / 2, (j0 + j1) / 2), abs=0.5)
    assert not left.warning.isVisible()


def test_two_by_two_back_to_one_keeps_the_active_image(qtbot: Any, make_window: Any,
                                                       tmp_path: Path) -> None:
    paths = [_write(tmp_path / "s", f"i{i}", "AAA", 64 + 16 * i, 80, seed=i,
                    study="1.2.826.0.1.3680043.8.498.7.99") for i in range(2)]
    window = make_window()
    _open(qtbot, window, paths)
    grid = window.viewports
    window.action_map["layout_2x2"].trigger()
    third = grid.viewports[2]
    _click(qtbot, third)
    target = _record(window, "i1.dcm")
    # a click on its thumbnail loads it into the active viewport
    records = list(window.grid.thumb_model.records)
    assert target in records
    with qtbot.waitSignal(window.sig_image_displayed, timeout=60000,
                          check_params_cb=lambda r, _p: r is target):
        window.grid.select_row(records.index(target))
    assert third.record is target and grid.viewports[0].record is not target
    window.action_map["layout_1x1"].trigger()
    assert grid.visible_viewports() == [third] and grid.active is third
    assert window.canvas.radiograph is not None and window.canvas.radiograph.rows == 80
    assert window.window_panel.prepared is third.canvas.prepared
    assert sum(vp.record is not None for vp in grid.viewports) == 1


def test_decode_failure_clears_only_its_viewport(qtbot: Any, make_window: Any,
                                                 tmp_path: Path) -> None:
    good = _write(tmp_path / "s", "good", "AAA", seed=1)
    src = _write(tmp_path / "src", "bad", "BBB", seed=2)
    bad = dicom_factory.write_truncated(src, tmp_path / "s" / "bad.dcm", keep=src.stat().st_size - 4000)
    window = make_window()
    _open(qtbot, window, [good, bad])
    grid = window.viewports
    r_good, r_bad = _record(window, "good.dcm"), _record(window, "bad.dcm")
    if window.images.current is not r_good:
        _show(qtbot, window, r_good)
    window.action_map["layout_1x2"].trigger()
    left, right = grid.viewports[:2]
    # the active viewport: it empties with the reason, the other keeps its image
    grid.set_active(right)
    with qtbot.waitSignal(window.sig_image_cleared, timeout=20000):
        window.images.show(r_bad)
    assert right.canvas.radiograph is None and "Cannot display" in right.canvas.message_label.text()
    assert left.canvas.radiograph is not None and left.record is r_good
    assert window.window_panel.prepared is None
    # load into the right one, then click the left one before it arrives: the failure still
    # lands in the right one only, and the panels keep describing the left one
    right_vp = right
    window.images.show(r_good)  # fills the right viewport first
    qtbot.waitUntil(lambda: right_vp.record is r_good, timeout=20000)
    grid.set_active(right)
    with qtbot.waitSignal(window.images.sig_image_failed, timeout=20000):
        window.images.show(r_bad)
        grid.set_active(left)
    assert right.canvas.radiograph is None and right.record is None
    assert left.canvas.radiograph is not None and window.window_panel.prepared is left.canvas.prepared
    assert window.images.current is r_good  # frames and header follow the active one


def test_ai_panel_and_overlays_follow_the_active_viewport(qtbot: Any, ai_window: Any,
                                                          models: Path, tmp_path: Path) -> None:
    a_path = _write(tmp_path / "s", "aaa", "AAA", seed=1)
    b_path = _write(tmp_path / "s", "bbb", "BBB", seed=2)
    window = ai_window(models)
    _open(qtbot, window, [a_path, b_path])
    ai, grid = window.ai, window.viewports
    ra, rb = _record(window, "aaa.dcm"), _record(window, "bbb.dcm")
    if window.images.current is not ra:
        _show(qtbot, window, ra)
    _analyse(qtbot, window)
    left = grid.active
    assert ai.overlays.mask_data is not None
    # the same image beside it without the overlays (the left one stays active)
    window.action_map["compare_next"].trigger()
    right = grid.viewports[1]
    assert grid.count == 2 and grid.active is left and right.record is ra
    assert right.canvas.mask_layer.item.image is None or not right.canvas.mask_layer.item.isVisible()
    assert left.canvas.mask_layer.item.isVisible()
    assert right.state.window == left.state.window
    # load another patient into the right one: the AI panel describes it (not analysed)
    _click(qtbot, right)
    assert left.frozen, "the left image keeps a still copy of its overlays"
    _show(qtbot, window, rb)
    assert ai.current_record is rb and "Not analysed" in ai.panel.state_label.text()
    assert left.warning.isVisible()
    # analysing now draws on the right (active) canvas, never over the left image
    frozen_left = [np.array(item.image, copy=True) for item in left.frozen]
    _analyse(qtbot, window)
    assert right.canvas.mask_layer.item.isVisible() and right.canvas.mask_layer.item.image is not None
    assert [np.array_equal(f, item.image) for f, item in zip(frozen_left, left.frozen)] == [True] * len(frozen_left)
    # back to the left: its result (analysed first) is in the panel again
    _click(qtbot, left)
    assert ai.current_record is ra and "Not analysed" not in ai.panel.state_label.text()
    assert ai.panel.tree.topLevelItemCount() > 0
    assert right.frozen  # the right one keeps its picture now


def test_measurements_stay_with_their_viewport(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    a_path = _write(tmp_path / "s", "aaa", "AAA", seed=1)
    b_path = _write(tmp_path / "s", "bbb", "AAA", seed=2)
    window = make_window()
    _open(qtbot, window, [a_path, b_path])
    grid, dock = window.viewports, window.measurements_dock
    ra, rb = _record(window, "aaa.dcm"), _record(window, "bbb.dcm")
    if window.images.current is not ra:
        _show(qtbot, window, ra)
    window.action_map["layout_1x2"].trigger()
    left, right = grid.viewports[:2]
    window.action_map["ruler"].setChecked(True)
    left.canvas._on_viewbox_ruler_drag(10.0, 10.0, "start")
    left.canvas._on_viewbox_ruler_drag(60.0, 40.0, "finish")
    assert len(left.canvas.measurements.state.items) == 1 and dock.table.rowCount() == 1
    # the tool goes with the active viewport; the dock lists the active image's measurements
    _click(qtbot, right)
    assert right.canvas.measurements.tool == "distance" and left.canvas.measurements.tool is None
    _show(qtbot, window, rb)
    assert dock.layer is right.canvas.measurements and dock.table.rowCount() == 0
    assert len(left.canvas.measurements.graphics) == 1  # still drawn on its own image
    # the same image in both: a measurement drawn in one shows in the other
    _click(qtbot, left)
    assert dock.table.rowCount() == 1
    window.action_map["compare_next"].trigger()
    assert right.record is ra and len(right.canvas.measurements.graphics) == 1
    left.canvas._on_viewbox_ruler_drag(5.0, 50.0, "start")
    left.canvas._on_viewbox_ruler_drag(50.0, 5.0, "finish")
    assert len(right.canvas.measurements.graphics) == 2 and dock.table.rowCount() == 2
