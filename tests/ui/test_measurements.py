"""Measurement tools with real widgets: drawing through the canvas's own handlers and real
mouse events, values checked against hand-computed ones on a synthetic DICOM (Rescale Slope 2,
Intercept -1024, Pixel Spacing 0.5 mm), zoom/rotation/flip, fit zoom, calibration, the list,
editing, deleting, per-image storage across image switches and sessions, and the exports."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from tests import dicom_factory
from tests.ui.helpers import gradient_radiograph, open_and_wait, shown_canvas
from viewer.core.measure import Measurement, evaluate
from viewer.core.radiograph import VOI, Radiograph
from viewer.dicom.load import load_radiograph
from viewer.state.display_plan import prepare_image, voi_to_window
from viewer.state.view_state import Orientation
from viewer.ui.canvas import ImageCanvas
from viewer.ui.canvas_layers import measure_text
from viewer.ui.measure_items import COLOUR, SELECTED
from viewer.ui.measurements_dock import MeasurementsDock, export_measurements_to


def roi_dicom(tmp_path: Path, name: str = "roi.dcm", spacing: bool = True) -> Radiograph:
    """40 x 50, stored value = column index; modality = 2 * column - 1024."""
    pixels = np.tile(np.arange(50, dtype=np.uint16), (40, 1))
    extra: dict[str, Any] = {"PixelSpacing": [0.5, 0.5]} if spacing else {}
    path = dicom_factory.write_dicom(tmp_path / name, pixels, bits_stored=12, RescaleSlope=2,
                                     RescaleIntercept=-1024, WindowCenter=-980,
                                     WindowWidth=120, **extra)
    return load_radiograph(str(path))


def show(canvas: ImageCanvas, rg: Radiograph) -> None:
    prepared = prepare_image(rg)
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi)


def drag(canvas: ImageCanvas, p0: tuple[float, float], p1: tuple[float, float]) -> None:
    """A left-drag as the view box reports it with a tool active."""
    canvas._on_viewbox_ruler_drag(p0[0], p0[1], "start")
    canvas._on_viewbox_ruler_drag((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2, "move")
    canvas._on_viewbox_ruler_drag(p1[0], p1[1], "finish")


def values(canvas: ImageCanvas) -> dict[str, str]:
    return {kind: value for _, kind, value in canvas.measurements.rows()}


def test_every_tool_draws_and_measures(qtbot: Any, tmp_path: Path) -> None:
    canvas = shown_canvas(qtbot, 600, 500)
    rg = roi_dicom(tmp_path)
    assert rg.spacing_kind == "PixelSpacing" and rg.modality_lut.slope == 2.0
    show(canvas, rg)
    layer = canvas.measurements
    dock = MeasurementsDock(layer)
    qtbot.addWidget(dock)
    layer.ask_text = lambda title, current: "look here"
    canvas.set_tool("distance")
    with qtbot.waitSignal(canvas.sig_ruler_measured) as blocker:
        drag(canvas, (2, 2), (32, 42))
    assert blocker.args[0] == "25.0 mm (PixelSpacing)"  # 50 px x 0.5 mm
    assert not canvas.ruler.line.isVisible()  # the live line became a measurement
    canvas.set_tool("angle")  # drag one arm, click the end of the other
    drag(canvas, (40, 5), (10, 5))
    assert layer.pending and not layer.rows()[1:]
    canvas.measurements.click(10, 35, False)
    canvas.set_tool("cobb")
    drag(canvas, (0, 0), (10, 0))
    drag(canvas, (0, 20), (10, 30))
    canvas.set_tool("rect")
    drag(canvas, (10, 10), (30, 20))
    canvas.set_tool("ellipse")
    drag(canvas, (5, 5), (45, 35))
    canvas.set_tool("arrow")
    drag(canvas, (40, 30), (30, 20))
    canvas.set_tool("text")
    canvas.measurements.click(3, 36, False)
    got = values(canvas)
    assert list(got) == ["Distance", "Angle", "Cobb angle", "Rectangle ROI", "Ellipse ROI",
                         "Arrow", "Text"]
    assert got["Angle"] == "90.0\u00b0" and got["Cobb angle"] == "Cobb 45.0\u00b0"
    # columns 10..29, ten rows: modality 2c - 1024; 20 x 10 px of 0.25 mm² each
    sd = 2 * math.sqrt(399 / 12 * 200 / 199)
    assert got["Rectangle ROI"] == (f"mean -985.0  SD {sd:.1f}  min -1004.0  max -966.0  "
                                    "area 50.0 mm\u00b2  n = 200 px")
    ellipse = layer.values[layer.state.items[4].ident]
    assert ellipse.stats is not None and ellipse.stats.area == pytest.approx(math.pi * 20 * 15 * 0.25)
    assert ellipse.stats.mean == pytest.approx(2 * 24.5 - 1024, abs=0.5)  # symmetric about x = 25
    assert got["Text"] == "look here"
    # the list shows the same rows, and the last item drawn is selected there
    assert dock.table.rowCount() == 7 and dock.table.item(3, 1).text() == got["Rectangle ROI"]
    assert layer.selected == layer.state.items[-1].ident
    assert dock.table.selectionModel().selectedRows()[0].row() == 6
    # labels next to their items, outlined, in the item colour
    graphic = layer.graphics[layer.state.items[3].ident]
    assert graphic.label.text.startswith("mean -985.0") and graphic.label.isVisible()


def test_three_clicks_make_an_angle_and_esc_cancels(qtbot: Any, tmp_path: Path) -> None:
    canvas = shown_canvas(qtbot, 500, 400)
    show(canvas, roi_dicom(tmp_path))
    layer = canvas.measurements
    canvas.set_tool("angle")
    for x, y in ((30, 10), (10, 10)):
        layer.click(x, y, False)
    layer.hover(10, 30)  # the third point follows the mouse
    assert layer._preview is not None and layer._preview.label.text == "90.0\u00b0"
    layer.escape()  # cancels the drawing, keeps the tool
    assert not layer.pending and layer._preview is None and layer.tool == "angle"
    for x, y in ((30, 10), (10, 10), (30, 30)):
        layer.click(x, y, True)  # quick clicks arrive as double-clicks: still points
    assert values(canvas) == {"Angle": "45.0\u00b0"}
    layer.escape()  # deselects
    assert layer.selected is None and layer.tool == "angle"
    with qtbot.waitSignal(layer.sig_tool_changed):
        layer.escape()  # puts the tool down
    assert layer.tool is None


def _mouse(widget: Any, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton,
           buttons: Qt.MouseButton) -> None:
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def _screen(canvas: ImageCanvas, x: float, y: float) -> QPoint:
    return canvas.view.mapFromScene(canvas.image_item.mapToScene(QPointF(x, y)))


def _left_drag(canvas: ImageCanvas, p0: tuple[float, float], p1: tuple[float, float]) -> None:
    viewport, left, none = canvas.view.viewport(), Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    QTest.qWait(12)  # the view box applies a new range at the next turn of the event loop
    start, end = _screen(canvas, *p0), _screen(canvas, *p1)
    _mouse(viewport, QEvent.Type.MouseButtonPress, start, left, left)
    for i in range(1, 7):
        # pyqtgraph drops moves closer than 10 ms apart (its mouseRateLimit, 100/s): a
        # burst of moves would be a click
        QTest.qWait(12)
        _mouse(viewport, QEvent.Type.MouseMove, start + (end - start) * i / 6, none, left)
    _mouse(viewport, QEvent.Type.MouseButtonRelease, end, left, none)


def test_real_mouse_draws_and_edits_with_handles(qtbot: Any, tmp_path: Path) -> None:
    canvas = shown_canvas(qtbot, 600, 500)
    show(canvas, roi_dicom(tmp_path))
    layer = canvas.measurements
    canvas.set_tool("rect")
    _left_drag(canvas, (10, 10), (30, 20))
    qtbot.waitUntil(lambda: len(layer.state.items) == 1, timeout=2000)
    rect = layer.state.items[0]
    assert np.ravel(rect.points) == pytest.approx([10, 10, 30, 20], abs=0.2)
    assert layer.selected == rect.ident and layer.graphics[rect.ident].handles[1].isVisible()
    canvas.set_tool(None)
    # drag the lower-right handle: the ROI grows, its values follow
    before = layer.values[rect.ident].stats
    _left_drag(canvas, (30, 20), (40, 30))
    edited = layer.state.items[0]
    assert list(edited.points[1]) == pytest.approx([40, 30], abs=0.2)
    after = layer.values[rect.ident].stats
    assert before is not None and after is not None and after.count > before.count
    assert after.area == pytest.approx(30 * 20 * 0.25, rel=0.03)
    # drag the body: the item moves, the pan does not happen
    view_range = canvas.viewbox.viewRange()
    _left_drag(canvas, (20, 15), (15, 10))
    assert list(layer.state.items[0].points[0]) == pytest.approx([5, 5], abs=0.3)
    assert canvas.viewbox.viewRange() == view_range
    # a click beside it deselects; a left-drag there pans as before
    _mouse(canvas.view.viewport(), QEvent.Type.MouseButtonPress, _screen(canvas, 48, 38),
           Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton)
    _mouse(canvas.view.viewport(), QEvent.Type.MouseButtonRelease, _screen(canvas, 48, 38),
           Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton)
    assert layer.selected is None


def test_values_stay_under_zoom_rotation_and_flips(qtbot: Any, tmp_path: Path) -> None:
    canvas = shown_canvas(qtbot, 500, 400)
    show(canvas, roi_dicom(tmp_path))
    layer = canvas.measurements
    for kind, pts in (("ellipse", ((5, 5), (45, 35))), ("angle", ((40, 5), (10, 5), (10, 35))),
                      ("distance", ((2, 2), (32, 42)))):
        layer.add(Measurement(kind, pts))  # type: ignore[arg-type]
    first = canvas.measurements.rows()
    handle = layer.graphics[layer.state.items[2].ident].handles
    for orientation in (Orientation(1, False, False), Orientation(2, True, False),
                        Orientation(3, False, True)):
        canvas.state.set_orientation(orientation)
        canvas.zoom(2.5)
        canvas.viewbox.translateBy(x=7, y=-3)
        assert canvas.measurements.rows() == first
        # the drawn points follow the image: the end handle sits on the image point
        end = canvas.image_item.mapToScene(QPointF(32, 42))
        assert handle[1].scenePos().x() == pytest.approx(end.x(), abs=1e-6)
        assert handle[1].scenePos().y() == pytest.approx(end.y(), abs=1e-6)


def test_measurements_drawn_over_the_fit_zoom_preview(qtbot: Any) -> None:
    canvas = shown_canvas(qtbot, 600, 500)
    rg = Radiograph(pixels=np.full((2000, 1200), 300, np.uint16), bits_stored=12,
                    vois=(VOI("W", 2000.0, 4000.0),))
    show(canvas, rg)
    assert canvas.preview.active and canvas.image_item.opacity() == 0.0
    canvas.measurements.add(Measurement("ellipse", ((100, 200), (1100, 1800))))
    canvas.measurements.add(Measurement("arrow", ((900, 100), (300, 600))))
    img = canvas.view.grab().toImage()
    rgb = np.array([[img.pixelColor(x, y).getRgb()[:3] for x in range(0, img.width(), 2)]
                    for y in range(0, img.height(), 2)])
    yellow = (np.abs(rgb - np.array(COLOUR.getRgb()[:3])).sum(axis=2) < 60)
    assert yellow.sum() > 200  # outline of the ellipse and the arrow
    # outlined labels: dark edge pixels around light text exist near the ROI label
    assert canvas.measurements.graphics[canvas.measurements.state.items[0].ident].label.text


def test_calibration_by_a_known_length(qtbot: Any, tmp_path: Path) -> None:
    canvas = shown_canvas(qtbot, 500, 400)
    show(canvas, roi_dicom(tmp_path, "nospacing.dcm", spacing=False))
    layer = canvas.measurements
    layer.add(Measurement("distance", ((0, 0), (30, 40))))
    layer.add(Measurement("rect", ((10, 10), (30, 20))))
    assert values(canvas)["Distance"] == "50.0 px (no pixel spacing)"
    assert "area 200.0 px\u00b2" in values(canvas)["Rectangle ROI"]
    layer.ask_length = lambda current: 10.0
    canvas.set_tool("calibration")
    drag(canvas, (0, 0), (0, 40))  # 40 px are 10 mm
    assert layer.scale.kind == "Calibration" and layer.scale.spacing == (0.25, 0.25)
    got = values(canvas)
    assert got["Distance"] == "12.5 mm (calibrated)" and got["Calibration"] == "calibration 10 mm"
    assert "area 12.5 mm\u00b2 (calibrated)" in got["Rectangle ROI"]
    # the ruler's live text says so too
    canvas.set_tool("distance")
    canvas._on_viewbox_ruler_drag(0, 0, "start")
    canvas._on_viewbox_ruler_drag(0, 8, "move")
    assert canvas.ruler.text == "2.0 mm (calibrated)"
    canvas._on_viewbox_ruler_drag(0, 8, "finish")
    # deleting the calibration takes the image back to pixels
    cal = next(m for m in layer.state.items if m.kind == "calibration")
    layer.delete([cal.ident])
    assert layer.rows()[0][2] == "50.0 px (no pixel spacing)"
    # an image with Pixel Spacing keeps it: the calibration tool refuses, and says why
    show(canvas, roi_dicom(tmp_path, "spacing.dcm"))
    with qtbot.waitSignal(layer.sig_message) as blocker:
        canvas.set_tool("calibration")
    assert "PixelSpacing" in blocker.args[0]
    drag(canvas, (0, 0), (0, 40))
    assert layer.state.items == ()


def test_list_selects_edits_and_deletes(qtbot: Any, tmp_path: Path) -> None:
    canvas = shown_canvas(qtbot, 500, 400)
    show(canvas, roi_dicom(tmp_path))
    layer = canvas.measurements
    dock = MeasurementsDock(layer)
    qtbot.addWidget(dock)
    assert dock.empty.isVisibleTo(dock) and not dock.clear_button.isEnabled()
    text = layer.add(Measurement("text", ((20, 20),), "first words"))
    arrow = layer.add(Measurement("arrow", ((40, 30), (25, 22))))
    dock.table.selectRow(0)
    assert layer.selected == text.ident
    assert layer.graphics[text.ident].line.pen().color() == SELECTED
    assert dock.edit_button.isEnabled()
    # double-click on the text (no tool) edits it
    layer.ask_text = lambda title, current: current + ", edited"
    layer.select(None)
    assert layer.click(20.5, 20.5, True)
    assert layer.item(text.ident) is not None and layer.item(text.ident).text == "first words, edited"  # type: ignore[union-attr]
    assert dock.table.item(0, 1).text() == "first words, edited"
    # select from the canvas -> the row; Delete button removes it
    layer.click(32, 26, False)
    assert layer.selected == arrow.ident and dock.table.selectionModel().selectedRows()[0].row() == 1
    dock.delete_button.click()
    assert [m.ident for m in layer.state.items] == [text.ident] and not layer.graphics.get(arrow.ident)
    dock.clear_button.click()
    assert layer.state.items == () and dock.table.rowCount() == 0 and not layer.graphics


def test_each_image_keeps_its_measurements_across_switches_and_sessions(qtbot: Any, tmp_path: Path) -> None:
    a, b = roi_dicom(tmp_path, "a.dcm"), roi_dicom(tmp_path, "b.dcm")
    assert a.sop_instance_uid != b.sop_instance_uid
    canvas = shown_canvas(qtbot, 500, 400)
    canvas.measurements.store.folder = tmp_path / "store"
    show(canvas, a)
    canvas.measurements.add(Measurement("ellipse", ((5, 5), (25, 25))))
    canvas.measurements.add(Measurement("text", ((3, 3),), "keep"))
    shown_a = canvas.measurements.rows()
    show(canvas, b)  # another image: nothing of A's on the canvas
    assert canvas.measurements.rows() == [] and not canvas.measurements.graphics
    assert not [i for i in canvas.measurements.container.childItems() if i.isVisible()]
    canvas.set_image(None)  # nothing on screen: nothing measured
    assert canvas.measurements.rows() == []
    show(canvas, a)
    assert canvas.measurements.rows() == shown_a
    # a new session (new canvas, same folder) finds them in the user data folder
    other = shown_canvas(qtbot, 400, 300)
    other.measurements.store.folder = tmp_path / "store"
    show(other, a)
    assert other.measurements.rows() == shown_a
    files = list((tmp_path / "store").iterdir())
    assert len(files) == 1 and "keep" in files[0].read_text()
    assert a.sop_instance_uid not in files[0].read_text() and "Test^Patient" not in files[0].read_text()


def test_ruler_label_matches_the_measurement_label(qtbot: Any) -> None:
    canvas = shown_canvas(qtbot, 500, 400)
    show(canvas, gradient_radiograph())  # ImagerPixelSpacing (0.2, 0.25)
    canvas.set_tool("distance")
    drag(canvas, (0, 0), (40, 30))
    label = canvas.measurements.rows()[0][2]
    assert label == measure_text((0, 0), (40, 30), (0.2, 0.25), "ImagerPixelSpacing")
    item = canvas.measurements.state.items[0]
    assert evaluate(item, None, canvas.measurements.scale).label == label


def test_in_the_window_actions_list_switching_and_exports(qtbot: Any, make_window: Any,
                                                          small_study: Path, tmp_path: Path) -> None:
    window = make_window()
    open_and_wait(qtbot, window, [str(small_study)])
    canvas, layer, dock = window.canvas, window.canvas.measurements, window.measurements_dock
    # the store lives beside the test's INI settings, never in the user's data folder
    assert layer.store.folder is not None and tmp_path in layer.store.folder.parents
    keys = window.shortcuts_text()
    for words in ("Cobb Angle", "Ellipse ROI", "Esc", "Del", "Calibrate by a Known Length"):
        assert words in keys
    window.action_map["measure_rect"].trigger()
    assert layer.tool == "rect" and window.action_map["measure_rect"].isChecked()
    window.action_map["measure_ellipse"].trigger()  # one tool at a time
    assert layer.tool == "ellipse" and not window.action_map["measure_rect"].isChecked()
    rg = canvas.radiograph
    assert rg is not None
    drag(canvas, (1, 1), (rg.cols - 2, rg.rows - 2))
    window.action_map["ruler"].trigger()
    assert layer.tool == "distance" and not window.action_map["measure_ellipse"].isChecked()
    drag(canvas, (0, 0), (rg.cols - 1, rg.rows - 1))
    assert dock.table.rowCount() == 2
    first = layer.rows()
    # the PNG as seen holds the measurements (not the selection handles)
    png = tmp_path / "out" / "view.png"
    png.parent.mkdir()
    from viewer.ui.export_actions import export_png

    export_png(canvas, png, [small_study])
    import cv2

    img = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(int)
    yellow = np.abs(img - np.array(COLOUR.getRgb()[:3])).sum(axis=2) < 60
    assert yellow.sum() > 50
    assert layer.graphics[layer.selected].handles[0].isVisible()  # back after the grab
    # CSV export of this image's measurements; never into the study folder
    out = export_measurements_to(layer, tmp_path / "out" / "m.csv", [small_study])
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and lines[1].split(",")[2] == "Ellipse ROI"
    from viewer.services.export import ExportError

    with pytest.raises(ExportError, match="study folder"):
        export_measurements_to(layer, small_study / "m.csv", [small_study])
    # Del deletes the selected one; Esc puts the tool down (nothing drawn, nothing selected)
    window.action_map["delete_measurement"].trigger()
    assert dock.table.rowCount() == 1
    layer.select(None)
    window.action_map["cancel_drawing"].trigger()
    assert layer.tool is None and not window.action_map["ruler"].isChecked()
    kept = layer.rows()
    assert kept == first[:1]
    # another image: its own (none); back: ours again
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.step_image(1)
    assert dock.table.rowCount() == 0 and not layer.graphics
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.step_image(-1)
    assert layer.rows() == kept and dock.table.rowCount() == 1
    # a failed display clears them with everything else
    window.clear_display(None, "Cannot display this image: test")
    assert dock.table.rowCount() == 0 and not layer.graphics and "No image" in dock.empty.text()


def test_a_real_film_at_fit_zoom(qtbot: Any, shared_dicom: Path) -> None:
    """RG2 (hip CR, 2140 x 1760, PixelSpacing 0.2 mm, no rescale): drawn at fit zoom over the
    preview, values against numpy on the decoded pixels."""
    rg = load_radiograph(str(shared_dicom / "RG2_RLE.dcm"))
    assert rg.spacing_kind == "PixelSpacing" and rg.spacing_mm == (0.2, 0.2)
    canvas = shown_canvas(qtbot, 700, 600)
    show(canvas, rg)
    assert canvas.preview.active
    canvas.set_tool("ellipse")
    drag(canvas, (600, 700), (1000, 1300))
    canvas.set_tool("distance")
    drag(canvas, (100, 100), (100, 600))
    rows = canvas.measurements.rows()
    assert rows[1][2] == "100.0 mm (PixelSpacing)"  # 500 px x 0.2 mm
    st = canvas.measurements.values[canvas.measurements.state.items[0].ident].stats
    yy, xx = np.mgrid[0:rg.rows, 0:rg.cols] + 0.5
    inside = ((xx - 800) / 200) ** 2 + ((yy - 1000) / 300) ** 2 <= 1
    px = rg.pixels[inside].astype(np.float64)
    assert st is not None and st.count == px.size
    assert st.mean == pytest.approx(px.mean()) and st.sd == pytest.approx(px.std(ddof=1))
    assert (st.minimum, st.maximum) == (px.min(), px.max())
    assert st.area == pytest.approx(math.pi * 200 * 300 * 0.04) and st.area_unit == "mm\u00b2"
    img = canvas.view.grab().toImage()
    rgb = np.array([[img.pixelColor(x, y).getRgb()[:3] for x in range(0, img.width(), 2)]
                    for y in range(0, img.height(), 2)])
    drawn = np.abs(rgb - np.array(COLOUR.getRgb()[:3])).sum(axis=2) < 60
    drawn |= np.abs(rgb - np.array(SELECTED.getRgb()[:3])).sum(axis=2) < 60
    assert drawn.sum() > 100
