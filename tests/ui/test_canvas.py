"""Canvas: fast window/level (levels only), drags with the mouse, orientation, pixel probe,
ruler in mm, overlay layers and the patient overlay toggle."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from tests.ui.helpers import gradient_radiograph, shown_canvas
from viewer.core.radiograph import VOI
from viewer.state.display_plan import prepare_image, voi_to_window
from viewer.state.view_state import Orientation
from viewer.ui.canvas import ImageCanvas, orientation_transform


@pytest.fixture
def canvas(qtbot: Any) -> ImageCanvas:
    return shown_canvas(qtbot, 500, 400)


def show(canvas: ImageCanvas, **kwargs: Any) -> Any:
    voi = VOI("File window", center=2000.0, width=2000.0)
    rg = gradient_radiograph(vois=(voi,), **kwargs)
    prepared = prepare_image(rg)
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi, "Overlay text")
    return prepared


def test_window_changes_only_levels(canvas: ImageCanvas) -> None:
    prepared = show(canvas)
    item = canvas.image_item
    assert np.shares_memory(item.image, prepared.level_array)  # stored pixels, no copy
    assert tuple(item.levels) == pytest.approx((1000.0, 2999.0))  # PS3.3 C.11.2.1.2 LINEAR
    canvas.window_drag(50, -20, start=True)
    canvas.window_drag(0, 0, finish=True)
    win = canvas.state.window
    assert win is not None and win.origin == "drag"
    assert win.width > 2000.0 and win.center < 2000.0
    assert np.shares_memory(item.image, prepared.level_array)  # still no recompute
    assert tuple(item.levels) == pytest.approx((win.low, win.high - 1.0))


def test_monochrome1_levels_swapped_and_invert_toggle(canvas: ImageCanvas) -> None:
    show(canvas, photometric="MONOCHROME1")
    lo, hi = canvas.image_item.levels
    assert lo > hi  # swapped levels render the inverted ramp
    canvas.state.set_invert(True)
    lo2, hi2 = canvas.image_item.levels
    assert lo2 < hi2


def _send_mouse(widget: Any, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton,
                buttons: Qt.MouseButton) -> None:
    local = QPointF(pos)
    global_pos = QPointF(widget.mapToGlobal(pos))
    event = QMouseEvent(kind, local, global_pos, button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def test_right_drag_with_real_mouse_events(qtbot: Any, canvas: ImageCanvas) -> None:
    show(canvas)
    before = canvas.state.window
    viewport = canvas.view.viewport()
    start = viewport.rect().center()
    right = Qt.MouseButton.RightButton
    _send_mouse(viewport, QEvent.Type.MouseButtonPress, start, right, right)
    for step in range(1, 6):
        _send_mouse(viewport, QEvent.Type.MouseMove, start + QPoint(12 * step, 0),
                    Qt.MouseButton.NoButton, right)
    _send_mouse(viewport, QEvent.Type.MouseButtonRelease, start + QPoint(60, 0), right,
                Qt.MouseButton.NoButton)
    qtbot.waitUntil(lambda: canvas.state.window != before, timeout=2000)
    after = canvas.state.window
    assert after is not None and before is not None
    assert after.width > before.width  # dragging right widens the window
    assert after.center == pytest.approx(before.center)


def test_orientation_transform_maps_corners() -> None:
    t = orientation_transform(Orientation().rotated(1), width=80, height=64)
    assert t.map(QPointF(0, 0)) == QPointF(64, 0)  # top-left goes to top-right
    assert t.map(QPointF(80, 64)) == QPointF(0, 80)
    flip = orientation_transform(Orientation().flipped_h(), width=80, height=64)
    assert flip.map(QPointF(0, 0)) == QPointF(80, 0)
    both = orientation_transform(Orientation(2, True, True), width=80, height=64)
    assert both.map(QPointF(10, 5)) == QPointF(10, 5)  # 180 degrees + both flips = identity


def test_probe_follows_rotation(canvas: ImageCanvas) -> None:
    prepared = show(canvas, slope=2.0, intercept=-100.0)
    probe = canvas.probe_at(QPointF(79.5, 0.5))
    assert probe is not None and (probe.row, probe.col) == (0, 79)
    stored = float(prepared.radiograph.pixels[0, 79])
    assert probe.stored == (stored,) and probe.modality == stored * 2.0 - 100.0
    assert probe.spacing_kind == "ImagerPixelSpacing"
    canvas.state.set_orientation(Orientation().rotated(1))
    scene = canvas.image_item.mapToScene(QPointF(79.5, 0.5))
    back = canvas.image_item.mapFromScene(scene)
    assert canvas.probe_at(back) == probe
    assert canvas.probe_at(QPointF(-1, 3)) is None


def test_ruler_measures_mm_and_px(canvas: ImageCanvas, qtbot: Any) -> None:
    show(canvas)  # spacing (0.2 row, 0.25 col) mm, ImagerPixelSpacing
    canvas.set_ruler_active(True)
    with qtbot.waitSignal(canvas.sig_ruler_measured) as blocker:
        canvas._on_viewbox_ruler_drag(0.0, 0.0, "start")
        canvas._on_viewbox_ruler_drag(40.0, 30.0, "move")
        canvas._on_viewbox_ruler_drag(40.0, 30.0, "finish")
    expected = float(np.hypot(40 * 0.25, 30 * 0.2))
    assert blocker.args[0] == f"{expected:.1f} mm (ImagerPixelSpacing at detector)"
    show(canvas, spacing=None, spacing_kind=None)
    canvas.set_ruler_active(True)
    canvas._on_viewbox_ruler_drag(0.0, 0.0, "start")
    canvas._on_viewbox_ruler_drag(3.0, 4.0, "move")
    assert canvas.ruler.text == "5.0 px (no pixel spacing)"


def test_overlay_layers_and_patient_overlay(canvas: ImageCanvas) -> None:
    show(canvas)
    mask = np.zeros((64, 80), dtype=np.uint8)
    mask[10:20, 10:20] = 1
    canvas.set_mask(mask, opacity=0.3)
    heat = np.linspace(0, 1, 64 * 80, dtype=np.float32).reshape(64, 80)
    canvas.set_heatmap(heat, opacity=0.6)
    assert canvas.mask_layer.item.isVisible() and canvas.mask_layer.item.opacity() == pytest.approx(0.3)
    assert canvas.heatmap_layer.item.image.shape == (64, 80, 4)
    assert canvas.mask_layer.item.image[15, 15, 3] == 255 and canvas.mask_layer.item.image[0, 0, 3] == 0
    assert canvas.overlay_label.text() == "Overlay text"
    canvas.state.set_overlay_visible(False)
    assert not canvas.overlay_label.isVisible()
    show(canvas)  # a new image clears the AI layers
    assert not canvas.mask_layer.item.isVisible() and not canvas.heatmap_layer.item.isVisible()
    assert canvas.notice_label.text().startswith("Research use only")


def test_preview_used_when_zoomed_out(canvas: ImageCanvas) -> None:
    from viewer.core.radiograph import Radiograph

    big = np.tile(np.linspace(0, 4095, 1500, dtype=np.float32), (1400, 1)).astype(np.uint16)
    prepared = prepare_image(Radiograph(pixels=big, bits_stored=12, vois=(VOI("W", 2000.0, 4000.0),)))
    assert prepared.preview is not None and prepared.preview.shape == (700, 750)
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi)
    assert canvas.preview.active and canvas.image_item.opacity() == 0.0
    mask = np.zeros(big.shape, dtype=np.uint8)
    mask[:100, :100] = 1
    canvas.set_mask(mask)
    assert canvas.mask_layer.item.isVisible()  # overlays stay visible over the preview
    assert canvas.mask_layer.item.effectiveOpacity() > 0
    # the preview covers exactly the full image in view coordinates
    full = canvas.image_item.mapRectToView(canvas.image_item.boundingRect())
    small = canvas.preview.item.mapRectToView(canvas.preview.item.boundingRect())
    assert (small.width(), small.height()) == pytest.approx((full.width(), full.height()))
    canvas.state.set_window(voi_to_window(VOI("N", 1000.0, 500.0)))
    assert tuple(canvas.preview.item.levels) == tuple(canvas.image_item.levels)
    canvas.viewbox.setRange(xRange=(0, 50), yRange=(0, 40), padding=0)
    assert not canvas.preview.active and canvas.image_item.opacity() == 1.0


def test_research_notice_stays_whole_on_a_narrow_canvas(qtbot: Any) -> None:
    """It is a strip under the image view (never over the image's pixels), in one line where
    there is room, and wraps rather than being cut off."""
    wide = shown_canvas(qtbot, 900, 400)
    narrow = shown_canvas(qtbot, 220, 400)
    for c in (wide, narrow):
        label, view = c.notice_label, c.view
        assert label.isVisible() and label.parent() is c
        assert label.y() >= view.y() + view.height()  # below the image view, not on it
        assert label.x() >= 0 and label.x() + label.width() <= c.width()
    line = wide.notice_label.fontMetrics().height()
    assert wide.notice_label.height() < 2 * line + 12  # one line where there is room
    assert narrow.notice_label.height() > wide.notice_label.height()  # wrapped, not clipped


def test_view_info_says_window_zoom_and_transforms(qtbot: Any) -> None:
    """Issue 16: a small image magnified 3.5x, a rotation or an inversion said nothing."""
    from viewer.core.radiograph import VOI
    from viewer.state.display_plan import prepare_image, voi_to_window
    from viewer.state.view_state import Orientation

    canvas = shown_canvas(qtbot, 640, 480)
    assert not canvas.info_label.isVisible()
    voi = VOI("W", center=2000.0, width=3000.0)
    prepared = prepare_image(gradient_radiograph(rows=60, cols=90, vois=(voi,)))
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi)
    text = canvas.info_label.text()
    assert canvas.info_label.isVisible() and "W 3000  L 2000" in text
    zoom = int(text.split("zoom ")[1].split("%")[0])
    assert zoom > 300  # 90 px wide in a 640-px view
    canvas.state.set_orientation(Orientation(1, False, False))
    canvas.state.set_invert(True)
    assert "rotated 90" in canvas.info_label.text() and "inverted" in canvas.info_label.text()
    canvas.set_image(None)
    assert not canvas.info_label.isVisible()


def test_ruler_is_drawn_while_the_preview_stands_in(qtbot: Any) -> None:
    """Issue 16: at fit zoom the ruler was invisible (drawn on the full-resolution layer that
    the zoomed-out preview makes transparent)."""
    from PySide6.QtCore import QPointF

    from viewer.core.radiograph import Radiograph

    canvas = shown_canvas(qtbot, 600, 500)
    rg = Radiograph(pixels=np.random.default_rng(0).integers(0, 4000, (2000, 1200)).astype(np.uint16),
                    photometric="MONOCHROME2", bits_stored=12, vois=(VOI("W", 2000.0, 4000.0),))
    prepared = prepare_image(rg)
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi)
    assert canvas.preview.active  # fit zoom of a 2.4 MP image: the preview is shown
    canvas.ruler.line.setLine(100.0, 100.0, 1100.0, 1900.0)
    canvas.ruler.line.setVisible(True)
    canvas.ruler.start, canvas.ruler.end = QPointF(100, 100), QPointF(1100, 1900)
    img = canvas.view.grab().toImage()
    rgb = np.array([[img.pixelColor(x, y).getRgb()[:3] for x in range(0, img.width(), 3)]
                    for y in range(0, img.height(), 3)])
    yellow = (rgb[..., 0] > 200) & (rgb[..., 1] > 180) & (rgb[..., 2] < 80)
    assert yellow.sum() > 20


def test_orientation_markers_follow_rotation_and_flips(qtbot: Any) -> None:
    """Issue 16: orientation markers where the header gives (0020,0020) Patient Orientation."""
    from dataclasses import replace

    from viewer.core.geometry import edge_markers
    from viewer.state.view_state import Orientation

    assert edge_markers(("L", "F")) == {"right": "L", "left": "R", "bottom": "F", "top": "H"}
    assert edge_markers(("L", "F"), 1) == {"right": "H", "left": "F", "bottom": "L", "top": "R"}
    assert edge_markers(("L", "F"), 0, flip_h=True)["right"] == "R"
    canvas = shown_canvas(qtbot, 500, 400)
    rg = replace(gradient_radiograph(rows=60, cols=90, vois=(VOI("W", 2000.0, 3000.0),)),
                 patient_orientation=("L", "F"))
    prepared = prepare_image(rg)
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi)
    assert canvas.markers["right"].text() == "L" and canvas.markers["top"].isVisible()
    canvas.state.set_orientation(Orientation(1, False, False))
    assert canvas.markers["right"].text() == "H" and canvas.markers["bottom"].text() == "L"
    plain = prepare_image(gradient_radiograph(rows=60, cols=90))
    canvas.set_image(plain, voi_to_window(plain.voi), plain.voi)
    assert not any(m.isVisible() for m in canvas.markers.values())  # no header, no markers


def test_scale_bar_matches_the_pixel_spacing(qtbot: Any) -> None:
    """Issue 16: a scale bar when the spacing is known."""
    canvas = shown_canvas(qtbot, 640, 480)
    rg = gradient_radiograph(rows=60, cols=90, spacing=(0.5, 0.5), vois=(VOI("W", 2000.0, 3000.0),))
    prepared = prepare_image(rg)
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi)
    bar = canvas.scale_label
    assert bar.isVisible() and bar.text().endswith(" mm")
    mm = float(bar.text().split()[0])
    screen_per_mm = 1.0 / (canvas.viewbox.viewPixelSize()[0] * 0.5)
    assert abs(bar.width() - mm * screen_per_mm) <= 2
    nospacing = prepare_image(gradient_radiograph(rows=60, cols=90, spacing=None))
    canvas.set_image(nospacing, voi_to_window(nospacing.voi), nospacing.voi)
    assert not bar.isVisible()
