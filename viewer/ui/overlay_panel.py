"""Overlay controls: one control group and one canvas layer per overlay of the shown result.

A result's overlays are typed (:class:`viewer.services.analysis_types.Overlay`: a declared
segment's mask, a classifier's Grad-CAM++ heatmap). :data:`CONTROLS` maps an overlay kind to the
control group that draws it (as napari maps layer types to their controls): a mask group has
visibility, opacity, style and colour; a heatmap group has visibility, opacity, a class (or
finding) selector, whose other maps are computed from the kept activations through
``heatmap_for``, and the share of its mass inside the masks of the role its model declares
(``heatmap_share``, e.g. inside the ``lung_field`` of the lungs model). The heatmaps share one
colormap with its legend. The layers are children of the canvas's image item, so they follow
zoom, pan, rotation and flips; the first mask and the first heatmap use the canvas's own
``mask_layer`` and ``heatmap_layer``.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QSlider, QVBoxLayout, QWidget,
)

from viewer.core.overlay import (
    COLORMAPS, HEAT_TRANSPARENT_BELOW, apply_colormap, heatmap_mass_inside, mask_contour,
)
from viewer.services.analysis_types import OK, AnalysisResult, ModelResult, Overlay
from viewer.ui.canvas_layers import OverlayLayer, heatmap_to_rgba
from viewer.ui.results_panel import top_finding

__all__ = ["OverlayPanel", "OverlayControls", "MaskControls", "HeatmapControls", "CONTROLS",
           "MASK_COLOURS", "HEAT_TRANSPARENT_BELOW", "mask_rgba", "heatmap_rgba", "legend_image"]

MASK_COLOURS: dict[str, tuple[int, int, int]] = {
    "cyan": (0, 200, 255), "green": (80, 230, 80), "yellow": (255, 220, 0), "magenta": (255, 60, 220),
}
HeatmapFn = Callable[[Any, str, tuple[int, int]], np.ndarray]
ROLE_WORDS = {"lung_field": "lungs"}


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


def _slider(value: int) -> QSlider:
    slider = QSlider(Qt.Orientation.Horizontal)
    slider.setRange(0, 100)
    slider.setValue(value)
    return slider


class OverlayControls(QGroupBox):
    """The controls of one overlay and its canvas layer; subclasses draw their kind."""

    changed = Signal()
    default_opacity = 50

    def __init__(self, overlay: Overlay, layer: OverlayLayer, panel: OverlayPanel,
                 index: int) -> None:
        super().__init__(panel.describe(overlay))
        self.setObjectName(f"overlay:{overlay.key}")
        self.overlay, self.layer, self.panel, self.index = overlay, layer, panel, index
        self.array: np.ndarray = overlay.array
        self.form = QFormLayout(self)
        self.visible = QCheckBox("Show")
        self.visible.setChecked(True)
        self.opacity = _slider(self.default_opacity)
        self.form.addRow(self.visible)
        self.form.addRow("Opacity", self.opacity)
        self.visible.toggled.connect(self.apply)
        self.opacity.valueChanged.connect(self._on_opacity)

    def rgba(self) -> np.ndarray:
        raise NotImplementedError

    def apply(self, *_args: object) -> None:
        """Push this overlay to its canvas layer with the chosen style."""
        rgba = self.rgba() if self.visible.isChecked() else None
        self.layer.set_rgba(rgba, self.opacity.value() / 100)
        self.changed.emit()

    def _on_opacity(self, _value: int) -> None:
        self.layer.set_opacity(self.opacity.value() / 100)
        self.changed.emit()


class MaskControls(OverlayControls):
    """A declared segment's mask: filled or contour, in one of :data:`MASK_COLOURS`."""

    default_opacity = 40

    def __init__(self, overlay: Overlay, layer: OverlayLayer, panel: OverlayPanel,
                 index: int) -> None:
        super().__init__(overlay, layer, panel, index)
        self.mode = QComboBox()
        self.mode.addItems(["filled", "contour"])
        self.colour = QComboBox()
        self.colour.addItems(list(MASK_COLOURS))
        self.colour.setCurrentIndex(index % len(MASK_COLOURS))  # neighbours differ
        self.form.addRow("Style", self.mode)
        self.form.addRow("Colour", self.colour)
        for combo in (self.mode, self.colour):
            combo.currentIndexChanged.connect(self.apply)

    def rgba(self) -> np.ndarray:
        return mask_rgba(self.array, MASK_COLOURS[self.colour.currentText()],
                         self.mode.currentText() == "contour")


class HeatmapControls(OverlayControls):
    """A classifier's Grad-CAM++ map: class selector and its declared share inside a role."""

    def __init__(self, overlay: Overlay, layer: OverlayLayer, panel: OverlayPanel,
                 index: int) -> None:
        super().__init__(overlay, layer, panel, index)
        self.source: ModelResult | None = panel.result_of(overlay.model_id)
        self.klass = QComboBox()
        self.klass.setObjectName("heatmapClass")
        labels = list(self.source.probabilities) if self.source is not None else []
        labels = labels or [overlay.label]
        for label in labels:
            self.klass.addItem(f"{overlay.model_id}: {label}", label)
        self.klass.setCurrentIndex(labels.index(overlay.label) if overlay.label in labels else 0)
        self.form.addRow("Class", self.klass)
        self.share = QLabel("-")
        self.share.setObjectName("heatmapLungShare")
        self.share_role: str | None = None
        declared = [m for m in (self.source.measurements if self.source else ())
                    if m.kind == "heatmap_share"]
        if declared:
            self.share_role = declared[0].label
            where = ROLE_WORDS.get(self.share_role, self.share_role.replace("_", " "))
            self.form.addRow(f"Mass inside {where}", self.share)
        self.klass.currentIndexChanged.connect(self._on_class_changed)

    def rgba(self) -> np.ndarray:
        return heatmap_rgba(self.array, self.panel.heat_colormap.currentText())

    def apply(self, *_args: object) -> None:
        super().apply()
        self._update_share()

    def _update_share(self) -> None:
        if self.share_role is None:
            return
        found = self.panel.role_mask(self.share_role)
        share = None
        if found is not None and found[1].shape == self.array.shape:
            share = heatmap_mass_inside(self.array, found[1])
        text = "-" if share is None else f"{100 * share:.0f}%"
        self.share.setText(text if found is None or share is None else f"{text} ({found[0]})")

    def _on_class_changed(self, _index: int) -> None:
        label = self.klass.currentData()
        src, fn = self.source, self.panel.heatmap_for
        if src is None or label is None or fn is None or src.cams is None:
            return
        shape = self.array.shape
        self.array = fn(src, str(label), (int(shape[0]), int(shape[1])))
        self.apply()


# Output kind -> the control group that draws it (a new overlay kind registers here).
CONTROLS: dict[str, type[OverlayControls]] = {"mask": MaskControls, "heatmap": HeatmapControls}
_Z = {"mask": 5.0, "heatmap": 6.0}
_ROLE_ORDER = {"lung_field": 0, "anatomy": 1, "region": 2, "finding": 3}


class OverlayPanel(QWidget):
    """Controls the canvas overlays for the shown result."""

    sig_overlays_changed = Signal()

    def __init__(self, canvas: Any, heatmap_for: HeatmapFn | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("overlayPanel")
        self.canvas = canvas
        self.heatmap_for = heatmap_for
        self.result: AnalysisResult | None = None
        self.groups: list[OverlayControls] = []
        self._extra_layers: list[OverlayLayer] = []
        layout = QVBoxLayout(self)
        colours = QGroupBox("Heatmap colours (Grad-CAM++)")
        form = QFormLayout(colours)
        self.heat_colormap = QComboBox()
        self.heat_colormap.addItems(list(COLORMAPS))
        form.addRow("Colormap", self.heat_colormap)
        self.legend = QLabel()
        self.legend.setObjectName("heatmapLegend")
        self.legend.setToolTip("Grad-CAM++: where the model's evidence for the class is (relative, "
                               f"per image; below {HEAT_TRANSPARENT_BELOW:.0%} of the maximum not drawn)")
        form.addRow("Low \u2192 high", self.legend)
        layout.addWidget(colours)
        self.empty = QLabel("No overlays: analyse an image with a segmentation model or a "
                            "classifier with Grad-CAM++.")
        self.empty.setWordWrap(True)
        layout.addWidget(self.empty)
        self.groups_layout = QVBoxLayout()
        layout.addLayout(self.groups_layout)
        layout.addStretch(1)
        self.heat_colormap.currentIndexChanged.connect(self._update_legend)
        self.heat_colormap.currentIndexChanged.connect(self._apply_heatmaps)
        self._update_legend()

    def _update_legend(self) -> None:
        from PySide6.QtGui import QImage, QPixmap

        bar = np.ascontiguousarray(legend_image(self.heat_colormap.currentText()))
        h, w = bar.shape[:2]
        image = QImage(bar.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self.legend.setPixmap(QPixmap.fromImage(image))

    def _apply_heatmaps(self, *_args: object) -> None:
        for g in self.groups_of("heatmap"):
            g.apply()

    # -- lookups for the groups --------------------------------------------------------------
    def describe(self, overlay: Overlay) -> str:
        if overlay.kind == "mask":
            role = f", {overlay.role.replace('_', ' ')}" if overlay.role else ""
            return f"Mask: {overlay.label} ({overlay.model_id}{role})"
        return f"Heatmap: {overlay.model_id} (Grad-CAM++)"

    def result_of(self, model_id: str) -> ModelResult | None:
        return None if self.result is None else self.result.result(model_id)

    def role_mask(self, role: str) -> tuple[str, np.ndarray] | None:
        """``(segmenter id, union of its masks of role)``: the first segmenter by id that ran
        and declares ``role`` (the rule of the declared ``heatmap_share``)."""
        if self.result is None:
            return None
        for res in sorted(self.result.results, key=lambda r: r.model_id):
            masks = [o.array for o in res.overlays_of("mask") if o.role == role]
            if res.status == OK and masks:
                union = masks[0] if len(masks) == 1 else np.logical_or.reduce(masks).view(np.uint8)
                return res.model_id, union
        return None

    def groups_of(self, kind: str) -> list[OverlayControls]:
        return [g for g in self.groups if g.overlay.kind == kind]

    # -- compatibility views (the first mask / heatmap group) --------------------------------
    def _first(self, kind: str) -> OverlayControls | None:
        return next(iter(self.groups_of(kind)), None)

    @property
    def mask_data(self) -> np.ndarray | None:
        g = self._first("mask")
        return None if g is None else g.array

    @property
    def heatmap(self) -> np.ndarray | None:
        g = self._first("heatmap")
        return None if g is None else g.array

    @property
    def heat_source(self) -> ModelResult | None:
        g = self._first("heatmap")
        return g.source if isinstance(g, HeatmapControls) else None

    def shown_heatmap(self) -> tuple[str, str, np.ndarray, float] | None:
        """``(model id, class, heatmap, opacity)`` of the first heatmap shown, for the
        Secondary Capture export (the picture on screen, not another model's map)."""
        g = next((g for g in self.groups_of("heatmap") if g.visible.isChecked()), None)
        if not isinstance(g, HeatmapControls):
            return None
        label = g.klass.currentData()
        return (g.overlay.model_id, str(label if label is not None else g.overlay.label), g.array,
                g.opacity.value() / 100)

    def mask_group(self) -> MaskControls:
        g = self._first("mask")
        assert isinstance(g, MaskControls), "no mask shown"
        return g

    def heatmap_group(self) -> HeatmapControls:
        g = self._first("heatmap")
        assert isinstance(g, HeatmapControls), "no heatmap shown"
        return g

    # -- content ---------------------------------------------------------------------------
    def clear(self) -> None:
        for g in self.groups:
            g.layer.set_rgba(None)
            g.setParent(None)
            g.deleteLater()
        for layer in self._extra_layers:
            layer.set_rgba(None)
            layer.item.setParentItem(None)
        self.groups, self._extra_layers = [], []
        self.result = None
        self.empty.setVisible(True)
        self.sig_overlays_changed.emit()

    def _layer(self, kind: str) -> OverlayLayer:
        first = not self.groups_of(kind)
        if first:
            return self.canvas.mask_layer if kind == "mask" else self.canvas.heatmap_layer  # type: ignore[no-any-return]
        layer = OverlayLayer(self.canvas.image_item, z=_Z.get(kind, 6.0) + 0.01 * len(self.groups))
        self._extra_layers.append(layer)
        return layer

    def _add(self, overlays: Sequence[Overlay], visible: Mapping[str, bool]) -> None:
        for overlay in overlays:
            factory = CONTROLS.get(overlay.kind)
            if factory is None:
                continue  # a kind without controls is not drawn
            group = factory(overlay, self._layer(overlay.kind), self, len(self.groups))
            group.visible.blockSignals(True)
            group.visible.setChecked(visible.get(overlay.key, True))
            group.visible.blockSignals(False)
            group.changed.connect(self.sig_overlays_changed.emit)
            self.groups.append(group)
            self.groups_layout.addWidget(group)
            group.apply()
        self.empty.setVisible(not self.groups)
        self.sig_overlays_changed.emit()

    def set_result(self, result: AnalysisResult | None) -> None:
        """One group per overlay of ``result``: every declared segment's mask (by role, then
        model id), then the heatmaps, the reported finding's first and the only one shown at the start (heatmaps
        of several models on top of each other would hide each other)."""
        self.clear()
        if result is None:
            return
        self.result = result
        ok = [r for r in result.results if r.status == OK]
        # Masks by role (the lung field first), then model id: a model added to the folder
        # never moves the others' masks to another colour or layer.
        masks = sorted((o for r in ok for o in r.overlays_of("mask")),
                       key=lambda o: (_ROLE_ORDER.get(o.role or "", len(_ROLE_ORDER)), o.model_id))
        heats = [o for r in ok for o in r.overlays_of("heatmap")]
        best = top_finding(result)
        heats.sort(key=lambda o: best is None or o.model_id != best.model_id)
        visible = {o.key: i == 0 for i, o in enumerate(heats)}
        self._add([*masks, *heats], visible)

    def set_overlays(self, overlays: Sequence[Overlay]) -> None:
        """Show stored overlays (a reopened history entry): one group each, masks first."""
        self.clear()
        masks = [o for o in overlays if o.kind == "mask"]
        self._add([*masks, *(o for o in overlays if o.kind != "mask")], {})

    def set_arrays(self, mask: np.ndarray | None, heatmap: np.ndarray | None, label: str = "") -> None:
        """Show stored overlays (a reopened history entry)."""
        self.clear()
        overlays = []
        if mask is not None:  # the mask may come from another entry of the run (a segmenter)
            overlays.append(Overlay("mask", "history", "stored mask", mask))
        if heatmap is not None:
            overlays.append(Overlay("heatmap", label or "history", "stored heatmap", heatmap))
        self._add(overlays, {})
