"""The image canvas: a pyqtgraph view showing one radiograph with fast window/level.

The canvas shows the modality values of the image with pyqtgraph levels (see
:mod:`viewer.state.display_plan`), so a window/level drag only changes two numbers: no lookup
table recompute and no auto-downsampling. Drag updates are throttled to the display rate.
Orientation, inversion, window and the overlay's visibility come from the shared
:class:`~viewer.state.view_state.ViewState`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QResizeEvent, QTransform
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from viewer import RESEARCH_NOTICE
from viewer.core.geometry import edge_markers
from viewer.core.measure import Measurement
from viewer.core.radiograph import VOI, Radiograph
from viewer.state.display_plan import (
    DisplayPlan,
    PreparedImage,
    is_exact,
    make_plan,
    modality_at,
    voi_to_window,
    window_levels,
)
from viewer.state.view_state import Orientation, ViewState, WindowLevel
from viewer.ui.canvas_layers import (
    CanvasViewBox,
    OverlayLayer,
    PreviewLayer,
    Ruler,
    heatmap_to_rgba,
    mask_to_rgba,
)
from viewer.ui.measure_items import MeasurementLayer

DRAG_INTERVAL_MS = 16  # one display frame at 60 Hz


@dataclass(frozen=True)
class PixelProbe:
    """What lies under the cursor: stored value, modality value and position."""

    row: int
    col: int
    stored: tuple[float, ...]
    modality: float | None
    units: str
    spacing_mm: tuple[float, float] | None
    spacing_kind: str | None
    pending: bool = False  # the image is a provisional stand-in: no values until the full one


PROVISIONAL_NOTE = "loading full resolution\u2026"


class ImageCanvas(QWidget):
    """Radiograph view with zoom/pan/rotate/flip/invert, window drag, ruler and overlays."""

    sig_pixel_hovered = Signal(object)  # PixelProbe | None
    sig_ruler_measured = Signal(str)

    def __init__(self, state: ViewState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.prepared: PreparedImage | None = None
        self.radiograph: Radiograph | None = None
        self.voi: VOI | None = None
        self.plan: DisplayPlan | None = None
        self._drag_window: WindowLevel | None = None
        self._pending_window: WindowLevel | None = None
        self._ruler_start = QPointF()
        # A reduced-resolution stand-in is shown until the full image arrives
        # (viewer.state.provisional): its pixel values are interpolated, so the readout, the
        # ruler and the measurements wait; ``provisional_window`` is the window it opened with.
        self.provisional = False
        self.provisional_window: WindowLevel | None = None

        self.view = pg.GraphicsView(self)
        self.view.setBackground("k")
        self.viewbox = CanvasViewBox(self._on_viewbox_window_drag, self._on_viewbox_ruler_drag)
        self.view.setCentralItem(self.viewbox)
        self.image_item = pg.ImageItem(axisOrder="row-major", autoDownsample=False)
        self.viewbox.addItem(self.image_item)
        self.viewbox.ruler_target = self.image_item
        self.mask_layer = OverlayLayer(self.image_item, z=5)
        self.heatmap_layer = OverlayLayer(self.image_item, z=6)
        self.ruler = Ruler(self.image_item)
        # Measurements of the image on screen (several at once, editable, kept per image).
        self.measurements = MeasurementLayer(self.image_item, self.viewbox, self)
        self.viewbox.measure_hooks = self.measurements
        self.preview = PreviewLayer(self.viewbox, self.image_item)
        self.viewbox.sigTransformChanged.connect(self._on_viewbox_transform_changed)
        self.viewbox.sigRangeChanged.connect(self._on_viewbox_transform_changed)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.overlay_label = QLabel(self.view)
        self.overlay_label.setObjectName("patientOverlay")
        # A dark backing keeps the corner text readable on bright collimation (issue 16).
        self.overlay_label.setStyleSheet("color: #f0f0f0; background: rgba(0, 0, 0, 130); padding: 6px;")
        self.overlay_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        # Bottom-left: window/level, zoom and the view's transforms (issue 16: a 224-px image
        # magnified 3.5x said nothing).
        self.info_label = QLabel(self.view)
        self.info_label.setObjectName("viewInfo")
        self.info_label.setStyleSheet("color: #f0f0f0; background: rgba(0, 0, 0, 130); padding: 3px;")
        self.info_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.info_label.hide()
        self.info_enabled = True  # golden-image tests turn it off (fonts differ by machine)
        # A scale bar when the pixel spacing is known (bottom-right, above the notice strip).
        self.scale_label = QLabel(self.view)
        self.scale_label.setObjectName("scaleBar")
        self.scale_label.setStyleSheet("color: #ffe080; background: rgba(0, 0, 0, 130); "
                                       "border-bottom: 3px solid #ffe080; padding: 1px;")
        self.scale_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.scale_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.scale_label.hide()
        # Orientation markers at the edges, from (0020,0020) Patient Orientation, following
        # rotation and flips.
        self.markers: dict[str, QLabel] = {}
        for edge in ("left", "right", "top", "bottom"):
            label = QLabel(self.view)
            label.setObjectName(f"marker_{edge}")
            label.setStyleSheet("color: #ffe080; background: rgba(0, 0, 0, 130); padding: 2px; "
                                "font-weight: bold;")
            label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            label.hide()
            self.markers[edge] = label
        # The research notice is a strip under the image, never over its pixels (it hid the
        # costophrenic angles at the bottom of chest films; issue 16).
        self.notice_label = QLabel(RESEARCH_NOTICE, self)
        self.notice_label.setObjectName("researchNotice")
        self.notice_label.setStyleSheet("color: #ffcc66; background: #1c1c1c; padding: 2px;")
        self.notice_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.notice_label.setWordWrap(True)  # on a narrow canvas it wraps instead of being cut
        layout.addWidget(self.notice_label)
        # Said on the empty canvas when an image cannot be shown (never a black, silent canvas).
        self.message_label = QLabel("", self.view)
        self.message_label.setObjectName("canvasMessage")
        self.message_label.setStyleSheet("color: #f0f0f0; background: rgba(120,30,30,200); "
                                         "padding: 10px; border-radius: 4px;")
        self.message_label.setWordWrap(True)
        self.message_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message_label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.message_label.hide()

        self._drag_timer = QTimer(self)
        self._drag_timer.setSingleShot(True)
        self._drag_timer.setInterval(DRAG_INTERVAL_MS)
        self._drag_timer.timeout.connect(self._on_drag_timer_timeout)
        self.view.scene().sigMouseMoved.connect(self._on_scene_mouse_moved)
        state.subscribe(self._on_state_changed)

    def show_message(self, text: str, error: bool = True) -> None:
        """A centred message over the canvas ("" hides it): why no image is shown (``error``)
        or what to do first."""
        self.message_label.setStyleSheet(
            "color: #f0f0f0; padding: 10px; border-radius: 4px; background: "
            + ("rgba(120,30,30,200);" if error else "rgba(40,60,80,200);"))
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))
        if text:
            width = max(200, min(self.view.width() - 40, 560))
            self.message_label.setFixedWidth(width)
            self.message_label.adjustSize()
            self.message_label.move(max(0, (self.view.width() - width) // 2),
                                    max(0, (self.view.height() - self.message_label.height()) // 2))
            self.message_label.raise_()

    # -- content ---------------------------------------------------------------------------
    def set_image(
        self,
        prepared: PreparedImage | None,
        window: WindowLevel | None = None,
        voi: VOI | None = None,
        overlay_text: str = "",
        fit: bool = True,
        provisional: bool = False,
    ) -> None:
        """Show a prepared image with ``window`` (fast path) or ``voi`` (full pipeline, for VOI
        LUT tables and SIGMOID); ``None`` clears the canvas. ``fit=False`` keeps the zoom and
        pan (another frame of the same image, or the full image replacing its stand-in).
        ``provisional``: a stand-in in full-image geometry (see ``self.provisional``)."""
        self.prepared = prepared
        self.radiograph = None if prepared is None else prepared.radiograph
        self.provisional = provisional and prepared is not None
        self.provisional_window = window if self.provisional else None
        self.show_message("")
        self.ruler.clear()
        self.measurements.show_image(None if self.provisional else self.radiograph)
        self.set_mask(None)
        self.set_heatmap(None)
        self.overlay_label.setText(overlay_text)
        self.overlay_label.adjustSize()
        if prepared is None:
            self.plan = self.voi = None
            self.image_item.clear()
            self.preview.set_image(None, (0.0, 1.0))
            self.update_info()
            return
        self.voi = voi
        self.state.window = window  # set without notifying: the render below applies it
        self._render(fit=fit)
        self.update_info()
        self.state.touch("window")

    def window_touched(self) -> bool:
        """Whether the user changed the window (drag, preset, VOI) since the provisional
        image was shown, or is dragging it now."""
        return self._drag_window is not None or self._pending_window is not None \
            or self.state.window != self.provisional_window

    def _render(self, fit: bool = False) -> None:
        if self.prepared is None:
            return
        self.plan = make_plan(self.prepared, self.state.window, self.voi, self.state.invert)
        self.image_item.setImage(self.plan.array, autoLevels=False, levels=self.plan.levels)
        preview = None if self.plan.fixed else self.prepared.preview
        self.preview.set_image(preview, self.plan.levels)
        self._apply_orientation()
        if fit:
            self.fit()

    def use_voi(self, voi: VOI) -> None:
        """Switch to one of the file's VOIs (window or VOI LUT table) or the auto window."""
        if self.prepared is None:
            return
        self.voi = voi
        self.state.window = voi_to_window(voi)
        self._render()
        self.state.touch("window")

    def apply_window(self, window: WindowLevel | None) -> None:
        """Show ``window``: only the levels change while on the fast path."""
        if self.prepared is None or window is None:
            return
        if self.voi is not None and not is_exact(self.voi) and voi_to_window(self.voi) != window:
            self.voi = None  # a manual window leaves the table / SIGMOID VOI behind
        if self.plan is None or self.plan.fixed:
            self._render()
            return
        assert self.radiograph is not None
        levels = window_levels(self.radiograph, window, self.voi, self.state.invert)
        self.image_item.setLevels(levels)
        self.preview.set_levels(levels)

    # -- overlays (extension points for AI results) -----------------------------------------
    def set_mask(self, mask: np.ndarray | None, opacity: float = 0.4) -> None:
        """Show a uint8 label mask at image resolution above the image (``None`` hides it)."""
        self.mask_layer.set_rgba(None if mask is None else mask_to_rgba(mask), opacity)

    def set_heatmap(self, heatmap: np.ndarray | None, opacity: float = 0.5) -> None:
        """Show a float32 [0, 1] heatmap at image resolution (``None`` hides it)."""
        self.heatmap_layer.set_rgba(None if heatmap is None else heatmap_to_rgba(heatmap), opacity)

    # -- view operations -------------------------------------------------------------------
    def fit(self) -> None:
        if self.radiograph is not None:
            self.viewbox.autoRange(items=[self.image_item], padding=0.02)
            self.preview.update()

    def zoom(self, factor: float) -> None:
        """Zoom about the view centre; ``factor`` > 1 zooms in."""
        self.viewbox.scaleBy((1.0 / factor, 1.0 / factor))
        self.preview.update()

    def set_ruler_active(self, active: bool) -> None:
        """The distance tool (the ruler) on or off (off leaves another tool alone)."""
        if active:
            self.set_tool("distance")
        elif self.measurements.tool in (None, "distance"):
            self.set_tool(None)

    def set_tool(self, kind: str | None) -> None:
        """Choose the measurement tool that left-drags and clicks draw with (``None``: none;
        see :mod:`viewer.ui.measure_items`)."""
        self.viewbox.ruler_active = kind is not None
        self.measurements.set_tool(kind)
        self.ruler.clear()

    def _apply_orientation(self) -> None:
        rg = self.radiograph
        if rg is None:
            return
        transform = orientation_transform(self.state.orientation, rg.cols, rg.rows)
        self.image_item.setTransform(transform)
        self.preview.set_transform(transform, rg.cols, rg.rows)
        self.preview.update()

    # -- state -----------------------------------------------------------------------------
    def _on_state_changed(self, name: str) -> None:
        if name == "orientation":
            self._apply_orientation()
            self.fit()
        elif name == "invert":
            self._render()
        elif name == "window":
            self.apply_window(self.state.window)
        elif name == "overlay_visible":
            self.overlay_label.setVisible(self.state.overlay_visible)
        self.update_info()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.state.unsubscribe(self._on_state_changed)
        self._drag_timer.stop()
        super().closeEvent(event)

    # -- mouse -----------------------------------------------------------------------------
    def window_drag(self, dx: float, dy: float, start: bool = False, finish: bool = False) -> None:
        """Adjust the window by a drag of (dx, dy) screen pixels: right = wider, down = higher
        centre (darker). Sensitivity scales with the data range."""
        if self.prepared is None or self.radiograph is None or self.radiograph.is_colour:
            return
        if start or self._drag_window is None:
            self._drag_window = self.state.window or self._range_window()
        span = self._value_span()
        step = span / 1000.0
        self._drag_window = self._drag_window.dragged(dy * step, dx * step)
        self._pending_window = self._drag_window
        if finish:
            self._on_drag_timer_timeout()
            self._drag_window = None
        elif not self._drag_timer.isActive():
            self._drag_timer.start()

    def _on_viewbox_transform_changed(self, *_args: object) -> None:
        self.preview.update()
        self.update_info()
        self.measurements.on_view_changed()

    def info_text(self) -> str:
        """Window/level, zoom (screen pixels per image pixel, %) and transforms in use."""
        if self.radiograph is None:
            return ""
        parts = []
        window = self.state.window
        if window is not None:
            parts.append(f"W {window.width:.0f}  L {window.center:.0f}")
        px = self.viewbox.viewPixelSize()[0]
        if px > 0:
            parts.append(f"zoom {100.0 / px:.0f}%")
        o = self.state.orientation
        flags = [f"rotated {90 * o.quarter_turns}\u00b0"] if o.quarter_turns else []
        flags += ["flipped H"] if o.flip_h else []
        flags += ["flipped V"] if o.flip_v else []
        flags += ["inverted"] if self.state.invert else []
        flags += [PROVISIONAL_NOTE] if self.provisional else []
        return "  |  ".join(parts + flags)

    def _update_markers(self) -> None:
        rg = self.radiograph
        orient = rg.patient_orientation if rg is not None and self.info_enabled else None
        if orient is None:
            for label in self.markers.values():
                label.hide()
            return
        o = self.state.orientation
        edges = edge_markers(orient, o.quarter_turns, o.flip_h, o.flip_v)
        w, h = self.view.width(), self.view.height()
        for edge, label in self.markers.items():
            label.setText(edges[edge])
            label.adjustSize()
            lw, lh = label.width(), label.height()
            x = {"left": 4, "right": w - lw - 4}.get(edge, (w - lw) // 2)
            y = {"top": 4, "bottom": h - lh - 28}.get(edge, (h - lh) // 2)
            label.move(x, y)
            label.show()

    def _update_scale(self) -> None:
        rg = self.radiograph
        px = self.viewbox.viewPixelSize()[0] if rg is not None else 0.0
        if rg is None or rg.spacing_mm is None or not self.info_enabled or px <= 0:
            self.scale_label.hide()
            return
        screen_px_per_mm = 1.0 / (px * float(rg.spacing_mm[1]))
        length_mm = next((mm for mm in (1, 2, 5, 10, 20, 50, 100, 200, 500)
                          if mm * screen_px_per_mm >= 60), 500)
        width = int(round(length_mm * screen_px_per_mm))
        if not 20 <= width <= self.view.width() - 40:
            self.scale_label.hide()
            return
        self.scale_label.setText(f"{length_mm:g} mm")
        self.scale_label.setFixedWidth(width)
        self.scale_label.adjustSize()
        self.scale_label.move(self.view.width() - width - 8, self.view.height() - self.scale_label.height() - 4)
        self.scale_label.show()

    def update_info(self) -> None:
        self._update_scale()
        self._update_markers()
        text = self.info_text() if self.info_enabled else ""
        self.info_label.setVisible(bool(text))
        if text and text != self.info_label.text():
            self.info_label.setText(text)
            self.info_label.adjustSize()
        if text:
            self.info_label.move(0, max(0, self.view.height() - self.info_label.height()))

    def _on_viewbox_window_drag(self, dx: float, dy: float, start: bool, finish: bool) -> None:
        self.window_drag(dx, dy, start, finish)

    def _on_drag_timer_timeout(self) -> None:
        if self._pending_window is not None:
            window, self._pending_window = self._pending_window, None
            self.state.set_window(window)

    def _value_span(self) -> float:
        if self.prepared is None:
            return 256.0
        lo, hi = self.prepared.value_range
        return max(hi - lo, 2.0)

    def _range_window(self) -> WindowLevel:
        assert self.prepared is not None
        lo, hi = self.prepared.value_range
        return WindowLevel((lo + hi) / 2.0, max(hi - lo, 1.0), "Full range", "auto")

    def _on_viewbox_ruler_drag(self, x: float, y: float, phase: str) -> None:
        rg = self.radiograph
        if rg is None or self.provisional:  # measured on the full image only
            return
        if self.measurements.tool not in (None, "distance"):
            self.measurements.tool_drag(x, y, phase)  # the other measurement tools
            return
        if phase == "start":
            self.measurements.cancel_drawing()  # a click-drawn first point, if any
            self._ruler_start = QPointF(x, y)
            return
        scale = self.measurements.scale  # the file's spacing, else the calibration, else px
        text = self.ruler.update(self._ruler_start, QPointF(x, y), scale.spacing, scale.kind)
        if phase == "finish":
            self.sig_ruler_measured.emit(text)
            start = (self._ruler_start.x(), self._ruler_start.y())
            if self.measurements.tool == "distance" and start != (x, y):
                # the line becomes a measurement that stays (listed, editable)
                m = self.measurements.add(Measurement("distance", (start, (x, y))))
                self.measurements.select(m.ident)
                self.ruler.clear()

    def _on_scene_mouse_moved(self, scene_pos: QPointF) -> None:
        pos = self.image_item.mapFromScene(scene_pos)
        self.sig_pixel_hovered.emit(self.probe_at(pos))
        if self.measurements.pending:
            self.measurements.hover(pos.x(), pos.y())

    def probe_at(self, image_pos: QPointF) -> PixelProbe | None:
        """Pixel information at image coordinates (x = column, y = row); ``None`` outside."""
        rg = self.radiograph
        if rg is None:
            return None
        row, col = int(np.floor(image_pos.y())), int(np.floor(image_pos.x()))
        if not (0 <= row < rg.rows and 0 <= col < rg.cols):
            return None
        if self.provisional:  # interpolated values are no readout
            return PixelProbe(row, col, (), None, "", rg.spacing_mm, rg.spacing_kind, pending=True)
        raw = rg.pixels[row, col]
        stored = tuple(float(v) for v in np.atleast_1d(raw))
        modality = None if rg.is_colour else modality_at(rg, stored[0])
        return PixelProbe(
            row, col, stored, modality, rg.modality_lut.units, rg.spacing_mm, rg.spacing_kind
        )

    # -- layout ----------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.overlay_label.move(0, 0)
        self.update_info()
        if self.message_label.isVisible():
            self.show_message(self.message_label.text())


def orientation_transform(orientation: Orientation, width: int, height: int) -> QTransform:
    """Transform of an image of ``width`` x ``height`` pixels: quarter turns clockwise (y down),
    then screen flips, translated so that the result starts at the origin."""
    t = QTransform()
    t.rotate(90.0 * orientation.quarter_turns)
    flip = QTransform.fromScale(-1.0 if orientation.flip_h else 1.0, -1.0 if orientation.flip_v else 1.0)
    t = t * flip
    box = t.mapRect(QRectF(0.0, 0.0, float(width), float(height)))
    return t * QTransform.fromTranslate(-box.x(), -box.y())
