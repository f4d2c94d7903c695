"""Canvas helpers: the window/level-aware view box, overlay layers and the ruler.

The overlay layers (mask, heatmap) are children of the image item, so they follow its rotation
and flips; they are the extension point for the AI results added later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, Qt
from PySide6.QtGui import QColor, QPen, QTransform
from PySide6.QtWidgets import QGraphicsItem, QGraphicsLineItem

from viewer.core.geometry import distance_mm, distance_px
from viewer.core.overlay import apply_colormap, heatmap_alpha

# (dx, dy, is_start, is_finish) in screen pixels
WindowDragFn = Callable[[float, float, bool, bool], None]
# (x, y, phase) in image coordinates; phase is "start", "move" or "finish"
RulerDragFn = Callable[[float, float, str], None]


class MeasureHooks(Protocol):
    """What the view box asks the measurement layer (``measure_items.MeasurementLayer``), in
    image coordinates: take a left-drag that starts on the selected item, and left clicks."""

    def begin_edit(self, x: float, y: float) -> bool: ...

    def edit(self, x: float, y: float, finish: bool) -> None: ...

    def click(self, x: float, y: float, double: bool) -> bool: ...

MASK_COLOURS = np.array(
    [[0, 0, 0, 0], [0, 200, 255, 255], [255, 200, 0, 255], [120, 255, 120, 255],
     [255, 90, 90, 255], [200, 120, 255, 255]],
    dtype=np.uint8,
)


class CanvasViewBox(pg.ViewBox):  # type: ignore[misc]  # pyqtgraph has no type information
    """A view box where right-drag and Ctrl+left-drag adjust the window instead of zooming,
    and left-drag measures while the ruler tool is active."""

    def __init__(self, on_window_drag: WindowDragFn, on_ruler_drag: RulerDragFn) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._on_window_drag = on_window_drag
        self._on_ruler_drag = on_ruler_drag
        self.ruler_active = False
        self.ruler_target: pg.GraphicsObject | None = None
        self.measure_hooks: MeasureHooks | None = None
        self._editing = False

    def mouseDragEvent(self, ev: Any, axis: int | None = None) -> None:
        ctrl = bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
        button = ev.button()
        if button == Qt.MouseButton.RightButton or (
            button == Qt.MouseButton.LeftButton and ctrl
        ):
            ev.accept()
            delta = ev.screenPos() - ev.lastScreenPos()
            self._on_window_drag(delta.x(), delta.y(), ev.isStart(), ev.isFinish())
            return
        hooks, target = self.measure_hooks, self.ruler_target
        if button == Qt.MouseButton.LeftButton and hooks is not None and target is not None:
            if ev.isStart():
                down = target.mapFromScene(ev.buttonDownScenePos())
                self._editing = hooks.begin_edit(down.x(), down.y())
            if self._editing:  # a handle or the body of the selected measurement
                ev.accept()
                pos = target.mapFromScene(ev.scenePos())
                hooks.edit(pos.x(), pos.y(), ev.isFinish())
                self._editing = not ev.isFinish()
                return
        if button == Qt.MouseButton.LeftButton and self.ruler_active and self.ruler_target:
            ev.accept()
            pos = self.ruler_target.mapFromScene(ev.scenePos())
            phase = "start" if ev.isStart() else "finish" if ev.isFinish() else "move"
            if ev.isStart():
                start = self.ruler_target.mapFromScene(ev.buttonDownScenePos())
                self._on_ruler_drag(start.x(), start.y(), "start")
            self._on_ruler_drag(pos.x(), pos.y(), "move" if phase == "start" else phase)
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev: Any) -> None:
        hooks, target = self.measure_hooks, self.ruler_target
        if ev.button() == Qt.MouseButton.LeftButton and hooks is not None and target is not None:
            pos = target.mapFromScene(ev.scenePos())
            if hooks.click(pos.x(), pos.y(), bool(ev.double())):
                ev.accept()
                return
        super().mouseClickEvent(ev)


class OverlayLayer:
    """One RGBA overlay image stacked above the radiograph with its own opacity."""

    def __init__(self, parent: pg.ImageItem, z: float) -> None:
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setParentItem(parent)
        self.item.setZValue(z)
        self.item.setVisible(False)
        # The parent is made fully transparent while the half-resolution preview stands in for
        # it; Qt then skips painting children that combine its opacity, so the overlays ignore it.
        self.item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresParentOpacity, True)

    def set_rgba(self, rgba: np.ndarray | None, opacity: float = 0.5) -> None:
        if rgba is None:
            self.item.clear()
            self.item.setVisible(False)
            return
        self.item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.item.setOpacity(float(np.clip(opacity, 0.0, 1.0)))
        self.item.setVisible(True)

    def set_opacity(self, opacity: float) -> None:
        self.item.setOpacity(float(np.clip(opacity, 0.0, 1.0)))


def mask_to_rgba(mask: np.ndarray) -> np.ndarray:
    """uint8 label mask (0 = background) -> RGBA with one colour per label."""
    labels = np.asarray(mask, dtype=np.uint8)
    index = np.where(labels == 0, 0, (labels - 1) % (len(MASK_COLOURS) - 1) + 1)
    return MASK_COLOURS[index]


def heatmap_to_rgba(heatmap: np.ndarray, colormap: str = "inferno") -> np.ndarray:
    """float32 heatmap in [0, 1] -> RGBA through ``colormap`` from
    :func:`viewer.core.overlay.apply_colormap` (the one colormap source: the CLI's and the
    exports' blends use it too), transparent below :data:`HEAT_TRANSPARENT_BELOW`, then alpha
    rising with the value."""
    rgb = apply_colormap(heatmap, colormap)
    rgba = np.empty(rgb.shape[:2] + (4,), np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = np.rint(heatmap_alpha(heatmap) * 255.0).astype(np.uint8)
    return rgba


class Ruler:
    """A line measured in mm (or px when the spacing is unknown), drawn in image coordinates."""

    def __init__(self, parent: pg.ImageItem) -> None:
        self.line = QGraphicsLineItem(parent)
        pen = QPen(QColor(255, 220, 0))
        pen.setCosmetic(True)
        pen.setWidthF(2.0)
        self.line.setPen(pen)
        self.line.setZValue(20)
        self.label = pg.TextItem(color=(255, 220, 0), anchor=(0, 1), fill=(0, 0, 0, 140))
        self.label.setParentItem(parent)
        self.label.setZValue(21)
        # The full-resolution image is made transparent while the zoomed-out preview stands in;
        # Qt then skipped painting the line (issue 16: the ruler was invisible at fit zoom).
        for item in (self.line, self.label):
            item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresParentOpacity, True)
        self.start = QPointF()
        self.end = QPointF()
        self.clear()

    def clear(self) -> None:
        self.line.setVisible(False)
        self.label.setVisible(False)
        self.text = ""

    def update(
        self,
        start: QPointF,
        end: QPointF,
        spacing_mm: tuple[float, float] | None,
        spacing_kind: str | None,
    ) -> str:
        """Draw the ruler from ``start`` to ``end`` (x = column, y = row) and return its label."""
        self.start, self.end = QPointF(start), QPointF(end)
        self.line.setLine(QLineF(self.start, self.end))
        self.line.setVisible(True)
        self.text = measure_text(
            (start.x(), start.y()), (end.x(), end.y()), spacing_mm, spacing_kind
        )
        self.label.setText(self.text)
        self.label.setPos(end)
        self.label.setVisible(True)
        return self.text


def measure_text(
    p0: tuple[float, float],
    p1: tuple[float, float],
    spacing_mm: tuple[float, float] | None,
    spacing_kind: str | None,
) -> str:
    """Label for the distance between two ``(x, y)`` image points: mm when the spacing is known
    (naming the attribute it came from), else pixels, clearly labelled."""
    if spacing_mm is None:
        return f"{distance_px(p0, p1):.1f} px (no pixel spacing)"
    mm = distance_mm(p0, p1, spacing_mm)
    if spacing_kind == "Calibration":  # the user's calibration by a known length
        return f"{mm:.1f} mm (calibrated)"
    kind = spacing_kind or "PixelSpacing"
    where = " at detector" if kind == "ImagerPixelSpacing" else ""
    return f"{mm:.1f} mm ({kind}{where})"


class PreviewLayer:
    """A half-resolution stand-in for the full image while zoomed out.

    When one screen pixel covers two or more image pixels, the full-resolution item is made
    transparent (its children, the overlays and the ruler, stay visible) and this item, drawn
    beneath, shows the area-averaged preview: a window/level step then converts a quarter of
    the pixels. Zooming in switches back to full resolution.
    """

    SWITCH_AT = 1.9  # image pixels per screen pixel

    def __init__(self, viewbox: pg.ViewBox, full: pg.ImageItem) -> None:
        self.item = pg.ImageItem(axisOrder="row-major", autoDownsample=False)
        self.item.setZValue(full.zValue() - 1)
        viewbox.addItem(self.item)
        self.viewbox = viewbox
        self.full = full
        full.setFlag(QGraphicsItem.GraphicsItemFlag.ItemDoesntPropagateOpacityToChildren, True)
        self.available = False
        self.active = False
        self.item.setVisible(False)

    def set_image(self, array: np.ndarray | None, levels: tuple[float, float]) -> None:
        self.available = array is not None
        if array is None:
            self.item.clear()
        else:
            self.item.setImage(array, autoLevels=False, levels=levels)
        self.update()

    def set_levels(self, levels: tuple[float, float]) -> None:
        if self.available:
            self.item.setLevels(levels)

    def set_transform(self, full_transform: QTransform, full_cols: int, full_rows: int) -> None:
        if not self.available or self.item.image is None:
            return
        rows, cols = self.item.image.shape[:2]
        scale = QTransform.fromScale(full_cols / cols, full_rows / rows)
        self.item.setTransform(scale * full_transform)

    def update(self) -> None:
        """Show the preview or the full image for the current zoom."""
        use = False
        if self.available:
            if getattr(self.viewbox, "_matrixNeedsUpdate", False):
                self.viewbox.updateMatrix()  # pyqtgraph defers it to the next paint
            px = self.viewbox.viewPixelSize()
            use = min(abs(px[0]), abs(px[1])) >= self.SWITCH_AT
        self.active = use
        self.item.setVisible(use)
        self.full.setOpacity(0.0 if use else 1.0)
