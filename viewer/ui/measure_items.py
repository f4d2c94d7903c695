"""Measurement items on the canvas and the layer that draws, selects and edits them.

Every item lives in image coordinates as a child of the image item, so it follows zoom, pan,
rotation and flips; its container ignores the image item's opacity, so it stays drawn while the
zoomed-out preview stands in for the full-resolution image (see ``canvas_layers.PreviewLayer``).
Labels and handles ignore transformations: they keep their screen size and stay upright, and
labels are outlined (dark edge, light fill) to read on bright and dark film alike.

Values come from :mod:`viewer.core.measure` (pure functions); what is measured on which image
is kept by :class:`viewer.state.measurements.MeasurementStore`.

Interaction (left button; right-drag stays window/level):

- a tool drag draws two points (distance, calibration, rectangle, ellipse, arrow); an angle is
  a drag along one arm then a click at the end of the other (or three clicks, the vertex
  second); a Cobb angle is a drag along each of the two lines (or four clicks);
- a text is a click, then its words;
- with no tool (or between drawings), a click selects an item; dragging a selected item's
  handle moves that point, dragging its body moves it all; values update live; a
  double-click edits a text (or a calibration's known length);
- Esc cancels a drawing in progress (and deselects), Del deletes the selected item.
"""

from __future__ import annotations

import math
from dataclasses import replace
from collections.abc import Callable, Sequence

import pyqtgraph as pg
from PySide6.QtCore import QLineF, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QGraphicsItem, QGraphicsPathItem, QGraphicsRectItem, QInputDialog, QStyleOptionGraphicsItem,
    QWidget,
)

from viewer.core.geometry import Point
from viewer.core.measure import (
    KIND_NAMES, POINTS_NEEDED, ImageMeasurements, Kind, MeasuredValue, Measurement, Scale,
    calibration_mm_per_px, evaluate, image_key, replace_item, resolve_scale, without,
)
from viewer.core.radiograph import Radiograph
from viewer.state.measurements import MeasurementStore

COLOUR = QColor(255, 220, 0)
SELECTED = QColor(90, 220, 255)
PREVIEW = QColor(255, 160, 60)
HIT_PX = 8.0  # screen pixels around a line or a handle that still hit it
ARROW_HEAD_PX = 16.0

AskText = Callable[[str, str], str | None]
AskLength = Callable[[float | None], float | None]


class OutlinedText(QGraphicsItem):
    """Text drawn with a dark outline under a light fill, at a constant screen size."""

    def __init__(self, parent: QGraphicsItem | None = None) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.font = QFont()
        self.font.setPointSizeF(10.0)
        self.font.setBold(True)
        self.colour = QColor(COLOUR)
        self.text = ""
        self._path = QPainterPath()
        self._rect = QRectF()

    def set_text(self, text: str) -> None:
        if text == self.text:
            return
        self.prepareGeometryChange()
        self.text = text
        metrics = QFontMetricsF(self.font)
        path = QPainterPath()
        for i, line in enumerate(text.split("\n")):
            path.addText(QPointF(10.0, 6.0 + metrics.ascent() + i * metrics.lineSpacing()),
                         self.font, line)
        self._path = path
        self._rect = path.boundingRect().adjusted(-3.0, -3.0, 3.0, 3.0) if text else QRectF()
        self.update()

    def set_colour(self, colour: QColor) -> None:
        self.colour = QColor(colour)
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if not self.text:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        outline = QPen(QColor(0, 0, 0, 235), 3.2)
        outline.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.strokePath(self._path, outline)
        painter.fillPath(self._path, QBrush(self.colour))


def _cosmetic(colour: QColor, width: float) -> QPen:
    pen = QPen(colour)
    pen.setCosmetic(True)
    pen.setWidthF(width)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    return pen


def shape_path(kind: str, points: Sequence[Point], px: float) -> QPainterPath:
    """The outline of an item (or of a drawing in progress) in image coordinates; ``px`` is the
    size of a screen pixel in image pixels (for arrow heads and end ticks)."""
    path = QPainterPath()
    pts = [QPointF(x, y) for x, y in points]
    if not pts:
        return path
    if kind in ("rect", "ellipse") and len(pts) >= 2:
        rect = QRectF(pts[0], pts[1]).normalized()
        if kind == "rect":
            path.addRect(rect)
        else:
            path.addEllipse(rect)
        return path
    if kind == "cobb":
        for a, b in zip(pts[0::2], pts[1::2]):
            path.moveTo(a)
            path.lineTo(b)
        if len(pts) % 2:
            path.addEllipse(pts[-1], 2 * px, 2 * px)
        return path
    if kind == "text":
        path.addEllipse(pts[0], 2.5 * px, 2.5 * px)
        return path
    path.moveTo(pts[0])
    for p in pts[1:]:
        path.lineTo(p)
    if len(pts) >= 2 and kind in ("distance", "calibration", "arrow"):
        line = QLineF(pts[0], pts[1])
        length = line.length()
        if length > 0:
            ux, uy = line.dx() / length, line.dy() / length
            if kind == "arrow":
                head = min(ARROW_HEAD_PX * px, 0.45 * length)
                for sign in (1.0, -1.0):
                    c, s = math.cos(math.radians(25)), sign * math.sin(math.radians(25))
                    dx, dy = -(ux * c - uy * s) * head, -(uy * c + ux * s) * head
                    path.moveTo(pts[1])
                    path.lineTo(pts[1] + QPointF(dx, dy))
            else:  # end ticks across the line
                tick = 5.0 * px
                for p in (pts[0], pts[1]):
                    path.moveTo(p + QPointF(-uy * tick, ux * tick))
                    path.lineTo(p + QPointF(uy * tick, -ux * tick))
    return path


def label_anchor(kind: str, points: Sequence[Point]) -> Point:
    """Where an item's label goes (image coordinates)."""
    if len(points) < POINTS_NEEDED.get(kind, 1):
        return points[-1]  # a drawing in progress
    if kind in ("rect", "ellipse"):
        return max(points[0][0], points[1][0]), max(points[0][1], points[1][1])
    if kind == "angle":
        return points[1]
    if kind == "arrow":
        return points[0]
    return points[-1]


class MeasureGraphic:
    """The drawn form of one measurement: outline (dark under light), label and handles."""

    def __init__(self, parent: QGraphicsItem, kind: str) -> None:
        self.kind = kind
        self.shadow = QGraphicsPathItem(parent)
        self.shadow.setPen(_cosmetic(QColor(0, 0, 0, 200), 4.0))
        self.line = QGraphicsPathItem(parent)
        self.label = OutlinedText(parent)
        self.handles: list[QGraphicsRectItem] = []
        self.parent = parent
        self.selected = False
        self.set_colour(COLOUR)

    def set_colour(self, colour: QColor) -> None:
        self.line.setPen(_cosmetic(colour, 2.0))
        self.label.set_colour(colour)

    def update(self, points: Sequence[Point], label: str, px: float) -> None:
        path = shape_path(self.kind, points, px)
        self.shadow.setPath(path)
        self.line.setPath(path)
        if points:
            x, y = label_anchor(self.kind, points)
            self.label.setPos(x, y)
        self.label.set_text(label)
        while len(self.handles) < len(points):
            handle = QGraphicsRectItem(-4.0, -4.0, 8.0, 8.0, self.parent)
            handle.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
            handle.setPen(QPen(QColor(0, 0, 0), 1.0))
            handle.setBrush(QBrush(QColor(255, 255, 255)))
            handle.setZValue(2)
            handle.setVisible(self.selected)
            self.handles.append(handle)
        for handle, (x, y) in zip(self.handles, points):
            handle.setPos(x, y)

    def set_selected(self, selected: bool, show_handles: bool = True) -> None:
        self.selected = selected
        self.set_colour(SELECTED if selected else COLOUR)
        for handle in self.handles:
            handle.setVisible(selected and show_handles)

    def remove(self) -> None:
        scene = self.parent.scene()
        for item in [self.shadow, self.line, self.label, *self.handles]:
            if scene is not None:
                scene.removeItem(item)
            else:
                item.setParentItem(None)
        self.handles = []


def _segment_distance(p: Point, a: Point, b: Point) -> float:
    ax, ay, bx, by = a[0], a[1], b[0], b[1]
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / length2))
    return math.hypot(p[0] - (ax + t * dx), p[1] - (ay + t * dy))


def hits_body(m: Measurement, p: Point, tol: float) -> bool:
    """Whether image point ``p`` lies on item ``m`` (within ``tol`` image pixels)."""
    pts = m.points
    if m.kind in ("rect", "ellipse"):
        x0, x1 = sorted((pts[0][0], pts[1][0]))
        y0, y1 = sorted((pts[0][1], pts[1][1]))
        return x0 - tol <= p[0] <= x1 + tol and y0 - tol <= p[1] <= y1 + tol
    if m.kind == "text":
        return math.hypot(p[0] - pts[0][0], p[1] - pts[0][1]) <= 2 * tol
    pairs = list(zip(pts[0::2], pts[1::2])) if m.kind == "cobb" else list(zip(pts, pts[1:]))
    return any(_segment_distance(p, a, b) <= tol for a, b in pairs)


class MeasurementLayer(QObject):
    """The measurements of the image on screen: tools, drawing, selection, editing, storage.

    Signals: ``sig_changed`` (items or their values changed), ``sig_selected(ident | None)``,
    ``sig_message(text)`` (a refusal or hint for the status bar), ``sig_measured(label)`` (an
    item was drawn or edited)."""

    sig_changed = Signal()
    sig_selected = Signal(object)
    sig_message = Signal(str)
    sig_measured = Signal(str)
    sig_tool_changed = Signal(object)  # the layer put its tool down (Esc)

    def __init__(self, image_item: pg.ImageItem, viewbox: pg.ViewBox,
                 dialog_parent: QWidget | None = None) -> None:
        super().__init__()
        self.viewbox = viewbox
        self.dialog_parent = dialog_parent
        # One container for all items: it ignores the image item's opacity (0 while the preview
        # stands in), and its children combine with it, not with the image item.
        self.container = QGraphicsPathItem(image_item)
        self.container.setPen(QPen(Qt.PenStyle.NoPen))
        self.container.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresParentOpacity, True)
        self.container.setZValue(15)
        self.store = MeasurementStore()
        self.radiograph: Radiograph | None = None
        self.key = ""
        self.state = ImageMeasurements()
        self.graphics: dict[str, MeasureGraphic] = {}
        self.values: dict[str, MeasuredValue] = {}
        self.selected: str | None = None
        self.tool: str | None = None
        self.pending: list[Point] = []
        self._rubber: Point | None = None
        self._preview: MeasureGraphic | None = None
        self._edit: tuple[str, int | None, Point, Measurement] | None = None
        self._handles_shown = True
        self.ask_text: AskText = self._ask_text_dialog
        self.ask_length: AskLength = self._ask_length_dialog

    # -- image -------------------------------------------------------------------------------
    def show_image(self, rg: Radiograph | None) -> None:
        """Show the measurements of ``rg`` (``None``: none). What was drawn on the previous
        image is already stored; it comes back with that image."""
        self.cancel_drawing()
        for graphic in self.graphics.values():
            graphic.remove()
        self.graphics, self.values, self.selected, self._edit = {}, {}, None, None
        self.radiograph = rg
        self.key = "" if rg is None else image_key(rg.sop_instance_uid, rg.source, rg.frame_index)
        self.state = ImageMeasurements() if rg is None else self.store.get(self.key)
        for m in self.state.items:
            self._draw(m)
        self.sig_selected.emit(None)
        self.sig_changed.emit()

    @property
    def scale(self) -> Scale:
        rg = self.radiograph
        if rg is None:
            return Scale()
        return resolve_scale(rg.spacing_mm, rg.spacing_kind, self.state.mm_per_px)

    def pixel_size(self) -> float:
        """Image pixels per screen pixel (the larger of the two axes)."""
        try:
            px = self.viewbox.viewPixelSize()
        except Exception:  # no view yet: pyqtgraph raises various errors
            return 1.0
        size = max(abs(float(px[0])), abs(float(px[1])))
        return size if size > 0 and math.isfinite(size) else 1.0

    # -- items -------------------------------------------------------------------------------
    def _draw(self, m: Measurement) -> None:
        graphic = self.graphics.get(m.ident)
        if graphic is None:
            graphic = self.graphics[m.ident] = MeasureGraphic(self.container, m.kind)
        value = evaluate(m, self.radiograph, self.scale)
        self.values[m.ident] = value
        graphic.update(m.points, value.label, self.pixel_size())

    def _commit(self, state: ImageMeasurements, redraw_all: bool = False) -> None:
        old_mm = self.state.mm_per_px
        self.state = state
        if self.key:
            self.store.put(self.key, state)
        for ident in [i for i in self.graphics if i not in {m.ident for m in state.items}]:
            self.graphics.pop(ident).remove()
            self.values.pop(ident, None)
            if self.selected == ident:
                self.select(None)
        if redraw_all or state.mm_per_px != old_mm:
            for m in state.items:
                self._draw(m)
        self.sig_changed.emit()

    def item(self, ident: str) -> Measurement | None:
        return next((m for m in self.state.items if m.ident == ident), None)

    def add(self, m: Measurement) -> Measurement:
        """Add (or replace, same id) an item on the image on screen."""
        if self.radiograph is None:
            return m
        self._draw(m)
        self._commit(replace_item(self.state, m))
        self.sig_measured.emit(self.values[m.ident].label.replace("\n", "  "))
        return m

    def delete(self, idents: Sequence[str]) -> None:
        if idents:
            self._commit(without(self.state, idents))

    def delete_selected(self) -> None:
        if self.selected is not None:
            self.delete([self.selected])

    def clear_all(self) -> None:
        self.cancel_drawing()
        self.delete([m.ident for m in self.state.items])

    def rows(self) -> list[tuple[str, str, str]]:
        """``(ident, type, value)`` per item in drawing order, for the list."""
        out = []
        for m in self.state.items:
            label = self.values[m.ident].label if m.ident in self.values else ""
            out.append((m.ident, KIND_NAMES[m.kind], label.replace("\n", "  ")))
        return out

    def select(self, ident: str | None) -> None:
        if ident is not None and ident not in self.graphics:
            ident = None
        if ident == self.selected:
            return
        if self.selected in self.graphics:
            self.graphics[self.selected].set_selected(False)
        self.selected = ident
        if ident is not None:
            self.graphics[ident].set_selected(True, self._handles_shown)
        self.sig_selected.emit(ident)

    def set_handles_visible(self, visible: bool) -> None:
        """Hide the selection handles (for an export of the view as seen)."""
        self._handles_shown = visible
        if self.selected in self.graphics:
            self.graphics[self.selected].set_selected(True, visible)

    def on_view_changed(self) -> None:
        """Zoom changed: arrow heads and end ticks keep their screen size."""
        px = self.pixel_size()
        for m in self.state.items:
            if m.kind in ("arrow", "distance", "calibration", "text", "cobb") and m.ident in self.graphics:
                self.graphics[m.ident].update(m.points, self.values[m.ident].label, px)

    # -- editing -----------------------------------------------------------------------------
    def edit_text(self, ident: str) -> bool:
        """Edit a text annotation's words or a calibration's known length (dialog)."""
        m = self.item(ident)
        if m is None:
            return False
        if m.kind == "text":
            words = self.ask_text("Edit text", m.text)
            if words is None:
                return True
            if not words.strip():
                self.delete([ident])
            else:
                self.add(Measurement(m.kind, m.points, words.strip(), ident=m.ident))
            return True
        if m.kind == "calibration":
            length = self.ask_length(m.length_mm)
            if length is not None:
                self._add_calibration(m.points, length, m.ident)
            return True
        return False

    def begin_edit(self, x: float, y: float) -> bool:
        """A left-drag starts at image point (x, y): take it when it is on the selected item
        (a handle moves that point, the body moves the item)."""
        if self.selected is None or self.pending:
            return False
        m = self.item(self.selected)
        if m is None:
            return False
        tol = HIT_PX * self.pixel_size()
        for i, (px, py) in enumerate(m.points):
            if math.hypot(x - px, y - py) <= tol:
                self._edit = (m.ident, i, (x, y), m)
                return True
        if hits_body(m, (x, y), tol):
            self._edit = (m.ident, None, (x, y), m)
            return True
        return False

    def edit(self, x: float, y: float, finish: bool) -> None:
        """Continue the drag begun by :meth:`begin_edit` (values update live)."""
        if self._edit is None:
            return
        ident, index, (x0, y0), original = self._edit
        if index is None:
            points = [(px + x - x0, py + y - y0) for px, py in original.points]
        else:
            points = list(original.points)
            points[index] = (x, y)
        moved = original.moved(points)
        if moved.kind == "calibration":
            try:
                calibration_mm_per_px(moved.points, moved.length_mm or 0.0)
            except ValueError:
                return
        if finish:
            self._edit = None
            self.add(moved)
            return
        self.state = replace_item(self.state, moved)
        if moved.kind == "calibration":
            for m in self.state.items:
                self._draw(m)
        else:
            self._draw(moved)
        self.sig_changed.emit()

    # -- drawing -----------------------------------------------------------------------------
    def set_tool(self, kind: str | None) -> None:
        """Choose a drawing tool (``None``: none); a drawing in progress is dropped."""
        if kind is not None and kind not in POINTS_NEEDED:
            raise ValueError(f"unknown tool {kind!r}")
        self.cancel_drawing()
        self.tool = kind
        if kind == "calibration" and self.radiograph is not None and self.radiograph.spacing_mm:
            self.sig_message.emit(
                f"This image has {self.radiograph.spacing_kind or 'PixelSpacing'}: measurements "
                "use it, and a calibration applies only to images without a pixel spacing.")

    def cancel_drawing(self) -> bool:
        """Drop a drawing in progress (Esc); True when there was one."""
        had = bool(self.pending) or self._edit is not None
        self.pending, self._rubber = [], None
        if self._edit is not None:
            ident, _, _, original = self._edit
            self._edit = None
            self.state = replace_item(self.state, original)
            self._draw(original)
            self.sig_changed.emit()
        if self._preview is not None:
            self._preview.remove()
            self._preview = None
        return had

    def _refuse_calibration(self) -> bool:
        rg = self.radiograph
        if self.tool == "calibration" and rg is not None and rg.spacing_mm is not None:
            self.sig_message.emit(f"Not calibrated: this image has {rg.spacing_kind or 'PixelSpacing'}"
                                  ", which measurements use.")
            return True
        return False

    def tool_drag(self, x: float, y: float, phase: str) -> None:
        """A left-drag with a tool: ``phase`` "start" (at the press point), "move", "finish"."""
        if self.tool is None or self.radiograph is None:
            return
        if phase == "start":
            if self._refuse_calibration():
                return
            if self.tool == "text":
                return
            if not self.pending or (self.tool == "cobb" and len(self.pending) == 2):
                self.pending.append((x, y))
            self._rubber = (x, y)
        elif phase == "move":
            if self.pending:
                self._rubber = (x, y)
        elif phase == "finish":
            if self.tool == "text":
                self.click(x, y, False)
                return
            if self.pending:
                self._rubber = None
                self._add_point((x, y))
                return
        self._update_preview()

    def hover(self, x: float, y: float) -> None:
        """The mouse moved (no button): the next point of a drawing follows it."""
        if self.pending:
            self._rubber = (x, y)
            self._update_preview()

    def click(self, x: float, y: float, double: bool) -> bool:
        """A left click at image point (x, y); True when a measurement took it. With a tool
        every click draws (a fast second click arrives as a double-click); without one a click
        selects the item under it and a double-click edits its text."""
        if self.radiograph is None:
            return False
        tool = self.tool
        if tool is not None:
            if self._refuse_calibration():
                return True
            if tool == "text":
                words = self.ask_text("Text annotation", "")
                if words and words.strip():
                    self.select(self.add(Measurement("text", ((x, y),), words.strip())).ident)
                return True
            self._add_point((x, y))
            return True
        hit = self._item_at(x, y)
        self.select(hit)
        if double and hit is not None:
            self.edit_text(hit)
        return hit is not None

    def escape(self) -> None:
        """Esc: cancel a drawing in progress, else deselect, else put the tool down."""
        if self.cancel_drawing():
            return
        if self.selected is not None:
            self.select(None)
        elif self.tool is not None:
            self.set_tool(None)
            self.sig_tool_changed.emit(None)

    def _item_at(self, x: float, y: float) -> str | None:
        tol = HIT_PX * self.pixel_size()
        for m in reversed(self.state.items):
            if hits_body(m, (x, y), tol):
                return m.ident
        return None

    def _add_point(self, p: Point) -> None:
        tool = self.tool
        if tool is None:
            return
        self.pending.append(p)
        if len(self.pending) < POINTS_NEEDED[tool]:
            self._update_preview()
            return
        points = tuple(self.pending[: POINTS_NEEDED[tool]])
        self.cancel_drawing()
        if len({(round(x, 3), round(y, 3)) for x, y in points}) < 2:
            return  # all in one place: nothing measured
        if tool == "calibration":
            length = self.ask_length(None)
            if length is not None:
                self._add_calibration(points, length, None)
            return
        kind: Kind = tool  # type: ignore[assignment]  # checked by set_tool
        m = self.add(Measurement(kind, points))
        self.select(m.ident)

    def _add_calibration(self, points: Sequence[Point], length_mm: float, ident: str | None) -> None:
        try:
            calibration_mm_per_px(points, length_mm)
        except ValueError as exc:
            self.sig_message.emit(f"Not calibrated: {exc}")
            return
        m = Measurement("calibration", tuple(points), length_mm=float(length_mm))
        self.add(replace(m, ident=ident) if ident else m)
        self.sig_message.emit(f"Calibrated: {self.scale.spacing[0] if self.scale.spacing else 0:.4f} "
                              "mm per pixel on this image; lengths and areas say \"calibrated\".")

    def _update_preview(self) -> None:
        tool = self.tool
        if tool is None or not self.pending:
            return
        points = self.pending + ([self._rubber] if self._rubber is not None else [])
        if self._preview is None or self._preview.kind != tool:
            if self._preview is not None:
                self._preview.remove()
            self._preview = MeasureGraphic(self.container, tool)
            self._preview.set_colour(PREVIEW)
        label = ""
        if len(points) == POINTS_NEEDED[tool] and tool not in ("text", "calibration"):
            kind: Kind = tool  # type: ignore[assignment]
            label = evaluate(Measurement(kind, tuple(points), ident="preview"), self.radiograph,
                             self.scale).label
        self._preview.update(points, label, self.pixel_size())

    # -- dialogs (replaced in tests) -------------------------------------------------------------
    def _ask_text_dialog(self, title: str, current: str) -> str | None:
        words, ok = QInputDialog.getText(self.dialog_parent, title, "Text:", text=current)
        return str(words) if ok else None

    def _ask_length_dialog(self, current: float | None) -> float | None:
        value, ok = QInputDialog.getDouble(
            self.dialog_parent, "Calibrate by a known length",
            "Length of the drawn line in mm (e.g. a calibration ball or ruler):",
            current if current is not None else 10.0, 0.01, 10000.0, 2)
        return float(value) if ok else None
