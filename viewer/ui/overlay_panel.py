"""Overlay controls: lung mask and Grad-CAM++ heatmap, each with visibility, opacity, colormap.

The layers are the canvas's mask and heatmap items (children of the image item), so they follow
zoom, pan, rotation and flips. The heatmap has a class selector (other classes are computed from
the kept activations through ``heatmap_for``); the share of its mass inside the lung mask is
shown beside it.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QSlider, QVBoxLayout, QWidget,
)

from viewer.core.overlay import (
    COLORMAPS, HEAT_TRANSPARENT_BELOW, apply_colormap, heatmap_mass_inside, mask_contour,
)
from viewer.services.analysis_types import OK, AnalysisResult
from viewer.ui.canvas_layers import heatmap_to_rgba
from viewer.ui.results_panel import top_finding

MASK_COLOURS: dict[str, tuple[int, int, int]] = {
    "cyan": (0, 200, 255), "green": (80, 230, 80), "yellow": (255, 220, 0), "magenta": (255, 60, 220),
}
HeatmapFn = Callable[[Any, str, tuple[int, int]], np.ndarray]


def mask_rgba(mask: np.ndarray, colour: tuple[int, int, int], contour: bool) -> np.ndarray:
    """RGBA layer of a label mask: filled (alpha where mask > 0) or its outline only."""
    inside = mask_contour(mask, thickness=3) if contour else np.asarray(mask) > 0
    rgba = np.zeros(inside.shape + (4,), np.uint8)
    rgba[inside, :3] = colour
    rgba[inside, 3] = 255
    return rgba


def heatmap_rgba(heatmap: np.ndarray, colormap: str) -> np.ndarray:
    """RGBA layer of a [0, 1] heatmap through ``colormap`` (the canvas's own conversion)."""
    return heatmap_to_rgba(heatmap, colormap)


def legend_image(colormap: str, width: int = 160, height: int = 12) -> np.ndarray:
    """(height, width, 3) uint8 colour bar of ``colormap`` from 0 (left) to 1 (right)."""
    ramp = np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1))
    return apply_colormap(ramp, colormap)


class OverlayPanel(QWidget):
    """Controls the canvas overlays for the shown result."""

    sig_overlays_changed = Signal()

    def __init__(self, canvas: Any, heatmap_for: HeatmapFn | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("overlayPanel")
        self.canvas = canvas
        self.heatmap_for = heatmap_for
        self.mask_data: np.ndarray | None = None
        self.heatmap: np.ndarray | None = None
        self.heat_source: Any = None  # ModelResult with cams
        layout = QVBoxLayout(self)
        mask_box = QGroupBox("Lung mask")
        form = QFormLayout(mask_box)
        self.mask_visible = QCheckBox("Show")
        self.mask_visible.setChecked(True)
        self.mask_opacity = self._slider(40)
        self.mask_mode = QComboBox()
        self.mask_mode.addItems(["filled", "contour"])
        self.mask_colour = QComboBox()
        self.mask_colour.addItems(list(MASK_COLOURS))
        form.addRow(self.mask_visible)
        form.addRow("Opacity", self.mask_opacity)
        form.addRow("Style", self.mask_mode)
        form.addRow("Colour", self.mask_colour)
        layout.addWidget(mask_box)
        heat_box = QGroupBox("Heatmap (Grad-CAM++)")
        form = QFormLayout(heat_box)
        self.heat_visible = QCheckBox("Show")
        self.heat_visible.setChecked(True)
        self.heat_opacity = self._slider(50)
        self.heat_colormap = QComboBox()
        self.heat_colormap.addItems(list(COLORMAPS))
        self.heat_class = QComboBox()
        self.heat_class.setObjectName("heatmapClass")
        self.lung_share = QLabel("-")
        self.lung_share.setObjectName("heatmapLungShare")
        form.addRow(self.heat_visible)
        form.addRow("Opacity", self.heat_opacity)
        form.addRow("Colormap", self.heat_colormap)
        self.legend = QLabel()
        self.legend.setObjectName("heatmapLegend")
        self.legend.setToolTip("Grad-CAM++: where the model's evidence for the class is (relative, "
                               f"per image; below {HEAT_TRANSPARENT_BELOW:.0%} of the maximum not drawn)")
        form.addRow("Low \u2192 high", self.legend)
        form.addRow("Class", self.heat_class)
        form.addRow("Mass inside lungs", self.lung_share)
        layout.addWidget(heat_box)
        layout.addStretch(1)
        for w in (self.mask_visible, self.heat_visible):
            w.toggled.connect(self._apply)
        for s in (self.mask_opacity, self.heat_opacity):
            s.valueChanged.connect(self._on_opacity_changed)
        for c in (self.mask_mode, self.mask_colour, self.heat_colormap):
            c.currentIndexChanged.connect(self._apply)
        self.heat_colormap.currentIndexChanged.connect(self._update_legend)
        self._update_legend()
        self.heat_class.currentIndexChanged.connect(self._on_class_changed)

    def _update_legend(self) -> None:
        from PySide6.QtGui import QImage, QPixmap

        bar = np.ascontiguousarray(legend_image(self.heat_colormap.currentText()))
        h, w = bar.shape[:2]
        image = QImage(bar.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.legend.setPixmap(QPixmap.fromImage(image))

    @staticmethod
    def _slider(value: int) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, 100)
        slider.setValue(value)
        return slider

    # -- content ---------------------------------------------------------------------------
    def clear(self) -> None:
        self.mask_data = self.heatmap = self.heat_source = None
        self.heat_class.blockSignals(True)
        self.heat_class.clear()
        self.heat_class.blockSignals(False)
        self.lung_share.setText("-")
        self._apply()

    def set_result(self, result: AnalysisResult | None) -> None:
        """Take the mask and heatmap of ``result`` (the first classifier with a heatmap)."""
        self.clear()
        if result is None:
            return
        self.mask_data = next((r.mask for r in result.results
                          if r.status == OK and r.task == "segmentation" and r.mask is not None), None)
        best = top_finding(result)  # the reported finding's map first
        source = best if best is not None and best.heatmap is not None else next(
            (r for r in result.results if r.heatmap is not None), None)
        if source is not None:
            self.heat_source = source
            self.heatmap = source.heatmap
            self.heat_class.blockSignals(True)
            labels = list(source.probabilities) or [source.heatmap_label or ""]
            for label in labels:
                self.heat_class.addItem(f"{source.model_id}: {label}", label)
            idx = max(0, labels.index(source.heatmap_label)) if source.heatmap_label in labels else 0
            self.heat_class.setCurrentIndex(idx)
            self.heat_class.blockSignals(False)
        self._apply()

    def set_arrays(self, mask: np.ndarray | None, heatmap: np.ndarray | None, label: str = "") -> None:
        """Show stored overlays (a reopened history entry)."""
        self.clear()
        self.mask_data, self.heatmap = mask, heatmap
        if heatmap is not None and label:
            self.heat_class.addItem(label, label)
        self._apply()

    def _on_class_changed(self, _index: int) -> None:
        label = self.heat_class.currentData()
        src = self.heat_source
        if src is None or label is None or self.heatmap_for is None or src.cams is None:
            return
        shape = src.heatmap.shape if src.heatmap is not None else self.heatmap.shape  # type: ignore[union-attr]
        self.heatmap = self.heatmap_for(src, str(label), (int(shape[0]), int(shape[1])))
        self._apply()

    def _on_opacity_changed(self, _value: int) -> None:
        self.canvas.mask_layer.set_opacity(self.mask_opacity.value() / 100)
        self.canvas.heatmap_layer.set_opacity(self.heat_opacity.value() / 100)
        self.sig_overlays_changed.emit()

    def _apply(self, *_args: object) -> None:
        """Push the layers to the canvas with the chosen style."""
        show_mask = self.mask_data is not None and self.mask_visible.isChecked()
        rgba = None
        if show_mask:
            colour = MASK_COLOURS[self.mask_colour.currentText()]
            rgba = mask_rgba(self.mask_data, colour, self.mask_mode.currentText() == "contour")  # type: ignore[arg-type]
        self.canvas.mask_layer.set_rgba(rgba, self.mask_opacity.value() / 100)
        show_heat = self.heatmap is not None and self.heat_visible.isChecked()
        heat = heatmap_rgba(self.heatmap, self.heat_colormap.currentText()) if show_heat else None  # type: ignore[arg-type]
        self.canvas.heatmap_layer.set_rgba(heat, self.heat_opacity.value() / 100)
        share = None
        if self.heatmap is not None and self.mask_data is not None and self.heatmap.shape == self.mask_data.shape:
            share = heatmap_mass_inside(self.heatmap, self.mask_data)
        self.lung_share.setText("-" if share is None else f"{100 * share:.0f}%")
        self.sig_overlays_changed.emit()
