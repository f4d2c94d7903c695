"""Several viewports side by side (issue 16): a 1 x 1, 1 x 2 or 2 x 2 grid of canvases.

Each :class:`Viewport` is a full :class:`~viewer.ui.canvas.ImageCanvas` with its own
:class:`~viewer.state.view_state.ViewState` (window, orientation, inversion, patient overlay),
its own measurements layer, corner text and research-notice strip, and the record it shows.
One viewport is *active* (a highlighted frame when there are several): a selected thumbnail,
series or browser item loads into it, a click on a viewport makes it active, and the side panels
(window/level, measurements, header, AI results) always describe the active viewport's image
(:func:`install_viewports` re-binds them when the active viewport changes). ``MainWindow.canvas``
and ``MainWindow.view_state`` are the active viewport's, so a single-canvas caller keeps working;
the single-canvas window is this grid at 1 x 1.

Linking (View > Link Zoom/Pan, Link Window): a zoom or pan in one viewport moves the others to
the same *relative* view (the same fraction of the image at the centre, the same share of the
image across), so films of different sizes stay comparable; a window change is copied in
modality units when both images have the same units, else mapped through each image's value
range. A newly shown image opens at its own fit and window; linking follows later changes.

When viewports show different patients (by Patient ID and name), each says so in a red strip
above its image, never over the pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QRectF, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFrame, QGraphicsItem, QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget,
)

from viewer.state.display_plan import PreparedImage, voi_to_window
from viewer.state.view_state import ViewState, WindowLevel
from viewer.ui.canvas import ImageCanvas

LAYOUTS: dict[str, tuple[int, int]] = {"1x1": (1, 1), "1x2": (1, 2), "2x2": (2, 2)}
ACTIVE_COLOUR = "#3d9bff"
INACTIVE_COLOUR = "#383838"
DIFFERENT_PATIENTS = "\u26a0 Different patients in the viewports"
UNIDENTIFIED_PATIENT = "\u26a0 Patient not identified in every viewport: they may differ"


def patient_identity(record: Any) -> tuple[str, str]:
    """(Patient ID, patient name) of a record, stripped ("" when absent)."""
    return (str(getattr(record, "patient_id", "") or "").strip(),
            str(getattr(record, "patient_name", "") or "").strip())


def patient_warning(records: list[Any]) -> str:
    """The warning for the records shown side by side ("" when one patient, or fewer than 2)."""
    ids = {patient_identity(r) for r in records if r is not None}
    if len(ids) < 2:
        return ""
    return UNIDENTIFIED_PATIENT if ("", "") in ids else DIFFERENT_PATIENTS


def map_view(src_image: QRectF, src_range: tuple[tuple[float, float], tuple[float, float]],
             dst_image: QRectF) -> tuple[tuple[float, float], tuple[float, float]]:
    """The view range of a viewport whose image occupies ``dst_image`` that shows the same
    relative part of it as ``src_range`` shows of ``src_image`` (view coordinates): the same
    fraction of the image at the centre, the same share of the image across."""
    (x0, x1), (y0, y1) = src_range
    sw, sh = max(src_image.width(), 1e-9), max(src_image.height(), 1e-9)
    fx = ((x0 + x1) / 2.0 - src_image.left()) / sw
    fy = ((y0 + y1) / 2.0 - src_image.top()) / sh
    rw, rh = (x1 - x0) / sw, (y1 - y0) / sh
    cx = dst_image.left() + fx * dst_image.width()
    cy = dst_image.top() + fy * dst_image.height()
    w, h = rw * dst_image.width(), rh * dst_image.height()
    return (cx - w / 2.0, cx + w / 2.0), (cy - h / 2.0, cy + h / 2.0)


def map_window(window: WindowLevel, src: PreparedImage, dst: PreparedImage) -> WindowLevel:
    """``window`` of ``src`` for ``dst``: the same numbers when both are in the same modality
    units (a known unit, or the same stored bit depth when neither has one), else the same
    position and share of each image's value range."""
    s, d = src.radiograph, dst.radiograph
    su, du = s.modality_lut.units, d.modality_lut.units
    if su == du and (su or s.bits_stored == d.bits_stored):
        return window
    slo, shi = src.value_range
    dlo, dhi = dst.value_range
    span_s, span_d = max(shi - slo, 1e-9), max(dhi - dlo, 1e-9)
    center = dlo + (window.center - slo) / span_s * span_d
    width = window.width / span_s * span_d
    return WindowLevel(center, width, "Linked", "user")


def canvas_image_rect(canvas: ImageCanvas) -> QRectF:
    """Where the image lies in the canvas's view coordinates (orientation included)."""
    item = canvas.image_item
    rect: QRectF = item.mapRectToParent(item.boundingRect())
    return rect


class Viewport(QFrame):
    """One canvas of the grid, with the record it shows and the patient-warning strip."""

    sig_pressed = Signal(object)  # self: a mouse button went down on the image area

    def __init__(self, index: int, state: ViewState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.setObjectName(f"viewport{index}")
        self.state = state
        self.canvas = ImageCanvas(state)
        self.canvas.overlay_label.setVisible(state.overlay_visible)
        self.record: Any = None
        self.frozen: list[pg.ImageItem] = []
        self.warning = QLabel("")
        self.warning.setObjectName("viewportWarning")
        self.warning.setStyleSheet("color: #ffffff; background: #a01818; padding: 3px; "
                                   "font-weight: bold;")
        self.warning.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.warning.setWordWrap(True)
        self.warning.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.warning)
        layout.addWidget(self.canvas, 1)
        self.active = False
        # The grid shares the room equally: the canvas's size hint (the scene's) must not
        # make one row taller than the other.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.canvas.view.viewport().installEventFilter(self)

    def hasHeightForWidth(self) -> bool:
        return False  # the wrapping labels inside must not make the grid's rows unequal

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.MouseButtonPress:
            self.sig_pressed.emit(self)
        return False

    def set_frame(self, active: bool, framed: bool) -> None:
        """The highlight: a coloured frame around the active viewport when there are several."""
        self.active = active
        width = 3 if framed else 0
        layout = self.layout()
        if layout is not None:
            layout.setContentsMargins(width, width, width, width)
        colour = ACTIVE_COLOUR if active else INACTIVE_COLOUR
        self.setStyleSheet(f"QFrame#{self.objectName()} {{ background: {colour}; }}" if framed else "")

    def set_warning(self, text: str) -> None:
        self.warning.setText(text)
        self.warning.setVisible(bool(text))

    # -- AI overlays of an inactive viewport ------------------------------------------------
    def freeze_overlays(self) -> int:
        """Keep a still copy of the overlays drawn on this canvas (the AI panel draws on the
        active canvas only and clears them when another viewport becomes active): the image
        keeps its mask or heatmap beside the other viewport. Returns how many were kept."""
        self.drop_frozen()
        kept = []
        for child in self.canvas.image_item.childItems():
            if (isinstance(child, pg.ImageItem) and child.isVisible() and child.image is not None
                    and child not in self.frozen):
                copy = pg.ImageItem(axisOrder="row-major")
                copy.setImage(child.image.copy(), autoLevels=False, levels=(0, 255))
                copy.setOpacity(child.opacity())
                copy.setZValue(child.zValue())
                copy.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresParentOpacity, True)
                copy.setParentItem(self.canvas.image_item)
                kept.append(copy)
        self.frozen = kept
        return len(kept)

    def drop_frozen(self) -> None:
        for item in self.frozen:
            item.setParentItem(None)
            scene = item.scene()
            if scene is not None:
                scene.removeItem(item)
        self.frozen = []


class ViewportGrid(QWidget):
    """The central widget: 1, 2 or 4 :class:`Viewport` s in a grid, one of them active."""

    sig_active_changed = Signal(object, object)  # new active Viewport, previous one
    sig_layout_changed = Signal(int, int)  # rows, columns
    sig_viewport_added = Signal(object)  # Viewport (wire its canvas's signals)

    def __init__(self, make_state: Callable[[], ViewState], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("viewportGrid")
        self.make_state = make_state
        self.viewports: list[Viewport] = []
        self.rows, self.cols = 1, 1
        self.link_zoom = False
        self.link_window = False
        self._linking = False
        self._syncing_measurements = False
        self._load_target: Viewport | None = None
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self.active = self._add()
        self._relayout()

    # -- viewports ---------------------------------------------------------------------------
    def _add(self) -> Viewport:
        vp = Viewport(len(self.viewports), self.make_state(), self)
        vp.sig_pressed.connect(self.set_active)
        vp.canvas.viewbox.sigRangeChanged.connect(lambda *_a, v=vp: self._on_range_changed(v))
        vp.state.subscribe(partial(self._on_state_changed, vp))
        vp.canvas.measurements.sig_changed.connect(partial(self._on_measurements_changed, vp))
        self.viewports.append(vp)
        self.sig_viewport_added.emit(vp)
        return vp

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def visible_viewports(self) -> list[Viewport]:
        return self.viewports[: self.count]

    def set_layout(self, rows: int, cols: int) -> None:
        """Show ``rows`` x ``cols`` viewports. Going down keeps the active viewport's image
        (it moves to the first place); the viewports no longer shown are emptied."""
        count = rows * cols
        if count < 1 or count > 4:
            raise ValueError(f"layout {rows}x{cols}: 1, 2 or 4 viewports")
        while len(self.viewports) < count:
            self._add()
        if self.viewports.index(self.active) >= count:
            i = self.viewports.index(self.active)
            self.viewports[0], self.viewports[i] = self.viewports[i], self.viewports[0]
        self.rows, self.cols = rows, cols
        for vp in self.viewports[count:]:
            self.clear_viewport(vp)
        self._relayout()
        self.update_warnings()
        self.sig_layout_changed.emit(rows, cols)

    def _relayout(self) -> None:
        for vp in self.viewports:
            self._grid.removeWidget(vp)
        for i, vp in enumerate(self.viewports):
            vp.index = i
            if i < self.count:
                self._grid.addWidget(vp, i // self.cols, i % self.cols)
                vp.show()
            else:
                vp.hide()
        for r in range(2):
            self._grid.setRowStretch(r, 1 if r < self.rows else 0)
        for c in range(2):
            self._grid.setColumnStretch(c, 1 if c < self.cols else 0)
        self._update_frames()

    def _update_frames(self) -> None:
        framed = self.count > 1
        for vp in self.viewports:
            vp.set_frame(vp is self.active, framed)

    def set_active(self, vp: Viewport) -> None:
        """Make ``vp`` the active viewport (the panels follow through ``sig_active_changed``)."""
        if vp is self.active or vp not in self.visible_viewports():
            return
        previous, self.active = self.active, vp
        self._update_frames()
        self.sig_active_changed.emit(vp, previous)

    def next_viewport(self) -> Viewport | None:
        """The visible viewport after the active one (wrapping), ``None`` in a 1 x 1 layout."""
        shown = self.visible_viewports()
        if len(shown) < 2:
            return None
        return shown[(shown.index(self.active) + 1) % len(shown)]

    # -- content ------------------------------------------------------------------------------
    @contextmanager
    def quiet(self) -> Iterator[None]:
        """Changes made inside are not propagated to linked viewports (a new image)."""
        before, self._linking = self._linking, True
        try:
            yield
        finally:
            self._linking = before

    def note_load(self, *_args: object) -> None:
        """A load started: its image goes to the viewport active now, even if the user
        clicks another one meanwhile."""
        self._load_target = self.active

    def take_load_target(self) -> Viewport:
        target, self._load_target = self._load_target, None
        return target if target is not None else self.active

    def load_target(self) -> Viewport:
        """The viewport the load in flight goes to (kept for its full image: a provisional
        stand-in shows there first, viewer/ui/progressive.py)."""
        return self._load_target if self._load_target is not None else self.active

    def show_image(self, vp: Viewport, record: Any, prepared: PreparedImage, overlay_text: str,
                   window: WindowLevel | None = None, voi: Any = None, fit: bool = True) -> None:
        """Show ``prepared`` in ``vp`` (its own fit, window and view unless given)."""
        vp.drop_frozen()
        vp.record = record
        if window is None and voi is None:
            voi = prepared.voi
            window = voi_to_window(voi)
        with self.quiet():
            vp.canvas.set_image(prepared, window, voi, overlay_text, fit=fit)
        self.update_warnings()

    def image_shown(self, vp: Viewport, record: Any) -> None:
        """``vp`` now shows ``record`` (set by the window's own display path)."""
        vp.drop_frozen()
        vp.record = record
        self.update_warnings()

    def clear_viewport(self, vp: Viewport, message: str = "") -> None:
        """Empty ``vp`` (with ``message`` on it when given): nothing of the previous image stays."""
        vp.drop_frozen()
        vp.record = None
        with self.quiet():
            vp.canvas.set_image(None)
        vp.canvas.show_message(message)
        vp.set_warning("")
        self.update_warnings()

    def clear_all(self) -> None:
        for vp in self.viewports:
            self.clear_viewport(vp)

    def update_warnings(self) -> None:
        shown = [vp for vp in self.visible_viewports() if vp.record is not None]
        text = patient_warning([vp.record for vp in shown])
        for vp in self.viewports:
            vp.set_warning(text if vp in shown else "")

    def _on_measurements_changed(self, vp: Viewport) -> None:
        """The same image in two viewports shows the same measurements (one store): the
        others showing ``vp``'s image redraw from it after a change."""
        key = vp.canvas.measurements.key
        if self._syncing_measurements or not key:
            return
        self._syncing_measurements = True
        try:
            for other in self.visible_viewports():
                layer = other.canvas.measurements
                if other is not vp and layer.key == key and layer.state is not vp.canvas.measurements.state:
                    layer.show_image(None if other.canvas.provisional else other.canvas.radiograph)
        finally:
            self._syncing_measurements = False

    # -- linking ------------------------------------------------------------------------------
    def set_link_zoom(self, on: bool) -> None:
        self.link_zoom = bool(on)
        if on:
            self._on_range_changed(self.active)

    def set_link_window(self, on: bool) -> None:
        self.link_window = bool(on)
        if on:
            self._on_state_changed(self.active, "window")

    def _others(self, vp: Viewport) -> list[Viewport]:
        return [o for o in self.visible_viewports() if o is not vp and o.canvas.prepared is not None]

    def copy_view(self, src: Viewport, dst: Viewport) -> None:
        """Give ``dst`` the relative view of ``src`` (see :func:`map_view`)."""
        if src.canvas.radiograph is None or dst.canvas.radiograph is None:
            return
        (x0, x1), (y0, y1) = src.canvas.viewbox.viewRange()
        xr, yr = map_view(canvas_image_rect(src.canvas), ((x0, x1), (y0, y1)),
                          canvas_image_rect(dst.canvas))
        with self.quiet():
            dst.canvas.viewbox.setRange(xRange=xr, yRange=yr, padding=0.0)
            dst.canvas.preview.update()

    def _on_range_changed(self, vp: Viewport) -> None:
        if self._linking or not self.link_zoom or vp.canvas.radiograph is None:
            return
        for other in self._others(vp):
            self.copy_view(vp, other)

    def _on_state_changed(self, vp: Viewport, name: str) -> None:
        if name != "window" or self._linking or not self.link_window:
            return
        window, prepared = vp.state.window, vp.canvas.prepared
        if window is None or prepared is None or prepared.radiograph.is_colour:
            return
        with self.quiet():
            for other in self._others(vp):
                target = other.canvas.prepared
                if target is not None and not target.radiograph.is_colour:
                    other.state.set_window(map_window(window, prepared, target))


# -- the window's side ----------------------------------------------------------------------
def install_viewports(window: Any) -> None:
    """Wire the grid of ``window`` (a MainWindow): actions, View > Layout menu and toolbar,
    and the side panels following the active viewport."""
    grid: ViewportGrid = window.viewports
    a: dict[str, QAction] = window.action_map
    layouts = {"layout_1x1": (1, 1), "layout_1x2": (1, 2), "layout_2x2": (2, 2)}
    for name, (rows, cols) in layouts.items():
        a[name].triggered.connect(lambda _=False, r=rows, c=cols: grid.set_layout(r, c))
    a["link_zoom"].toggled.connect(grid.set_link_zoom)
    a["link_window"].toggled.connect(grid.set_link_window)
    a["next_viewport"].triggered.connect(lambda: _activate_next(grid))
    a["compare_next"].triggered.connect(lambda: compare_in_next(window))

    def on_layout_changed(rows: int, cols: int) -> None:
        for name, shape in layouts.items():
            a[name].setChecked(shape == (rows, cols))

    grid.sig_layout_changed.connect(on_layout_changed)
    on_layout_changed(grid.rows, grid.cols)
    grid.sig_active_changed.connect(lambda vp, prev: follow_active(window, vp, prev))

    menu = window.view_menu
    first = menu.actions()[0] if menu.actions() else None
    layout_menu = menu.addMenu("&Layout")
    layout_menu.setObjectName("menu_layout")
    for name in (*layouts, "next_viewport", "compare_next", "link_zoom", "link_window"):
        layout_menu.addAction(a[name])
    if first is not None:
        menu.insertMenu(first, layout_menu)
        menu.insertSeparator(first)
    toolbar = window.addToolBar("Viewports")
    toolbar.setObjectName("toolbar_viewports")
    short = {"layout_1x1": "1\u00d71", "layout_1x2": "1\u00d72", "layout_2x2": "2\u00d72",
             "link_zoom": "Link zoom", "link_window": "Link W/L", "compare_next": "Compare"}
    for name, text in short.items():
        a[name].setIconText(text)  # the toolbar's button text; the menus keep the full text
    for name in (*layouts, "link_zoom", "link_window", "compare_next"):
        toolbar.addAction(a[name])


def _activate_next(grid: ViewportGrid) -> None:
    nxt = grid.next_viewport()
    if nxt is not None:
        grid.set_active(nxt)


def compare_in_next(window: Any) -> bool:
    """Put the active image, as it is shown (window, orientation, view), into the next
    viewport without the AI overlays (1 x 2 first when alone): the image with and without
    them side by side. The active viewport stays active and keeps its overlays."""
    from viewer.ui.image_controller import overlay_text

    grid: ViewportGrid = window.viewports
    src = grid.active
    prepared = src.canvas.prepared
    if prepared is None or src.record is None:
        window.status.show_text("No image in the active viewport to compare.")
        return False
    if src.canvas.provisional:
        window.status.show_text("Full resolution still loading: compare once it is shown.")
        return False
    if grid.count == 1:
        grid.set_layout(1, 2)
        src = grid.active
    dst = grid.next_viewport()
    assert dst is not None
    dst.state.orientation = src.state.orientation
    dst.state.invert = src.state.invert
    grid.show_image(dst, src.record, prepared, overlay_text(src.record, prepared.radiograph),
                    window=src.state.window, voi=src.canvas.voi, fit=True)
    grid.copy_view(src, dst)
    return True


def follow_active(window: Any, vp: Viewport, previous: Viewport) -> None:
    """The side panels now describe ``vp``'s image: window/level, measurements, frame box,
    header, the checked state of Invert and Patient Overlay, the measuring tool, and (through
    ``sig_image_displayed`` / ``sig_image_cleared``) the AI results panel."""
    canvas = vp.canvas
    # The measuring tool in use moves with the user to the active viewport.
    kind = previous.canvas.measurements.tool
    previous.canvas.set_tool(None)
    canvas.set_tool(kind)
    # Window/level panel: bound to the active viewport's state.
    panel = window.window_panel
    panel.state.unsubscribe(panel._on_state_changed)
    panel.state = vp.state
    vp.state.subscribe(panel._on_state_changed)
    panel.set_image(canvas.prepared)
    # Measurements: the store is shared, so the list is that image's latest.
    canvas.measurements.show_image(None if canvas.provisional else canvas.radiograph)
    dock = getattr(window, "measurements_dock", None)
    if dock is not None:
        dock.set_layer(canvas.measurements)
    for name, on in (("invert", vp.state.invert), ("overlay", vp.state.overlay_visible)):
        action = window.action_map[name]
        action.blockSignals(True)
        action.setChecked(on)
        action.blockSignals(False)
    rg = canvas.radiograph
    window.status.set_frames(rg.frame_index if rg else 0, rg.frame_count if rg else 1)
    window.status.show_probe(None)
    images = window.images
    if images.current_pending is None:  # a load in flight keeps its own record
        images.current = vp.record
        images.frame = rg.frame_index if rg is not None else 0
        if images.header_wanted and vp.record is not None:
            images.load_header(vp.record)
    if vp.record is None:
        window.header_view.set_header(None, "No image in the active viewport")
    # AI: the previous viewport keeps a still copy of its overlays; the panel draws on the
    # active canvas from now on (the AI side's OverlayPanel takes the canvas it draws on).
    ai_overlays = getattr(getattr(window, "ai", None), "overlays", None)
    if ai_overlays is not None:
        previous.freeze_overlays()
        ai_overlays.canvas = canvas
    vp.drop_frozen()
    if vp.record is not None and canvas.provisional:  # the AI waits for the full image
        from viewer.ui.progressive import LOADING_TEXT

        window.sig_image_cleared.emit(vp.record, LOADING_TEXT)
    elif vp.record is not None and canvas.prepared is not None:
        window.sig_image_displayed.emit(vp.record, canvas.prepared)
    else:
        window.sig_image_cleared.emit(None, "No image in the active viewport.")
