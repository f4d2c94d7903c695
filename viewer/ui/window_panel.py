"""Window/level panel: presets from the file, user presets, auto window, numeric fields and a
histogram with the current window marked on it."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from viewer.core.radiograph import VOI
from viewer.core.windowing import validate_voi
from viewer.state.display_plan import PreparedImage, voi_to_window
from viewer.state.view_state import ViewState, WindowLevel, WindowPreset

HISTOGRAM_DELAY_MS = 30  # after the image: its paint and the histogram's fall in separate turns


def voi_label(voi: VOI, index: int, rejected: str | None = None) -> str:
    """Combo-box text for a VOI: its (0028,1055) explanation (or 'Window n'), 'VOI LUT', the
    VOI function when not linear and where it comes from. The numbers are in the fields beside
    it; centre and width go to the tooltip. A file window that does not fit the data says so."""
    name = voi.explanation or f"Window {index + 1}"
    if voi.lut is not None:
        return f"{name} (VOI LUT, {len(voi.lut)} entries)"
    fn = "" if (voi.function or "LINEAR").upper() == "LINEAR" else f", {voi.function}"
    source = {"file": "file", "auto": "auto", "user": "user"}.get(voi.origin, voi.origin)
    unusable = "; does not fit the data" if rejected else ""
    return f"{name}{fn}  [{source}{unusable}]"


def _voi_tip(voi: VOI, rejected: str | None) -> str:
    numbers = "" if voi.lut is not None else f"C {voi.center:g} / W {voi.width:g}"
    return numbers + (f"\nnot used: {rejected}" if rejected else "")


class WindowPanel(QWidget):
    """Window/level controls bound to a :class:`ViewState`.

    Emits ``sig_voi_chosen`` for presets (the canvas switches VOI, including VOI LUT tables)
    and ``sig_presets_changed`` when the user saves or deletes a preset (the window persists
    them in its settings).
    """

    sig_voi_chosen = Signal(object)
    sig_presets_changed = Signal(list)

    def __init__(self, state: ViewState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.prepared: PreparedImage | None = None
        self.user_presets: list[WindowPreset] = []
        self._file_vois: tuple[VOI, ...] = ()
        self._updating = False

        self.presets = QComboBox()
        self.presets.setObjectName("windowPresets")
        self.presets.activated.connect(self._on_presets_activated)
        # A size hint that does not follow the items: new presets must not relayout the window.
        self.presets.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.presets.setMinimumContentsLength(24)
        self.center = self._spin()
        self.width_box = self._spin(minimum=1.0)
        self.center.editingFinished.connect(self._on_fields_edited)
        self.width_box.editingFinished.connect(self._on_fields_edited)
        self.note = QLabel("")
        self.note.setWordWrap(False)
        # The note changes on every window step: its size hint must not relayout the window.
        self.note.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        auto = QPushButton("Auto")
        auto.setToolTip("Window from the image histogram (0.5-99.5 %)")
        auto.clicked.connect(self._on_auto_clicked)
        save = QPushButton("Save preset...")
        save.clicked.connect(self._on_save_clicked)
        delete = QPushButton("Delete preset")
        delete.clicked.connect(self._on_delete_clicked)

        self.plot = pg.PlotWidget()
        self.plot.setObjectName("histogram")
        self.plot.setMinimumHeight(110)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.getPlotItem().hideAxis("left")
        self.plot.setMenuEnabled(False)
        self.curve = pg.PlotCurveItem(
            [0.0, 1.0], [0.0], stepMode="center", fillLevel=0, brush=(150, 150, 150, 120)
        )
        self.plot.addItem(self.curve)
        self.region = pg.LinearRegionItem(brush=(255, 200, 0, 50))
        self.region.setZValue(10)
        self.region.setMovable(False)  # until a greyscale image is shown
        self.region.sigRegionChangeFinished.connect(self._on_region_changed)
        self.plot.addItem(self.region)

        form = QFormLayout()
        form.addRow("Preset", self.presets)
        form.addRow("Centre", self.center)
        form.addRow("Width", self.width_box)
        buttons = QHBoxLayout()
        for button in (auto, save, delete):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.plot)
        layout.addWidget(self.note)
        state.subscribe(self._on_state_changed)
        # Only the controls are disabled without an image: disabling the whole panel repainted
        # the histogram plot (8-10 ms of the GUI thread) on every open and every first image.
        self._controls = (self.presets, self.center, self.width_box, auto, save, delete, self.note)
        self.set_controls_enabled(False)
        # The histogram is redrawn on a later event-loop turn than the image: painting both in
        # one turn kept the GUI thread busy for 20-25 ms of CPU (pyqtgraph paints in Python),
        # 50-120 ms of wall time on a loaded 2-core machine (bench.gui_probe).
        self._histogram_timer = QTimer(self)
        self._histogram_timer.setSingleShot(True)
        self._histogram_timer.setInterval(HISTOGRAM_DELAY_MS)
        self._histogram_timer.timeout.connect(self._show_histogram)

    @staticmethod
    def _spin(minimum: float = -1e7) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(minimum, 1e7)
        spin.setDecimals(1)
        spin.setKeyboardTracking(False)
        return spin

    # -- content ---------------------------------------------------------------------------
    def set_image(self, prepared: PreparedImage | None) -> None:
        """Fill presets and histogram for a newly displayed image."""
        self.prepared = prepared
        self.set_controls_enabled(prepared is not None and not prepared.radiograph.is_colour)
        self._file_vois = () if prepared is None else prepared.presets
        self._fill_presets()
        self._histogram_timer.start()
        if prepared is not None:
            self._show_window(self.state.window)

    def _show_histogram(self) -> None:
        """Draw the histogram of the current image (scheduled by :meth:`set_image`)."""
        prepared = self.prepared
        movable = self.controls_enabled()  # no region drags without a (greyscale) image
        if self.region.movable != movable:
            self.region.setMovable(movable)
        if prepared is None:
            self.curve.setData([0, 1], [0])
            return
        counts = np.log1p(prepared.hist_counts.astype(np.float64))
        self.curve.setData(prepared.hist_edges, counts)
        self.plot.setXRange(float(prepared.hist_edges[0]), float(prepared.hist_edges[-1]), padding=0.02)

    def flush_histogram(self) -> None:
        """Draw a pending histogram now (tests, screenshots)."""
        if self._histogram_timer.isActive():
            self._histogram_timer.stop()
            self._show_histogram()

    def set_controls_enabled(self, enabled: bool) -> None:
        """Enable the presets, fields and buttons (the histogram stays as it is; dragging its
        region does nothing without an image)."""
        for widget in self._controls:
            widget.setEnabled(enabled)

    def controls_enabled(self) -> bool:
        return self.presets.isEnabled()

    def set_user_presets(self, presets: list[WindowPreset]) -> None:
        self.user_presets = list(presets)
        self._fill_presets()

    def _fill_presets(self) -> None:
        self.presets.blockSignals(True)
        self.presets.clear()
        lo, hi = self.prepared.value_range if self.prepared is not None else (0.0, 1.0)
        for i, voi in enumerate(self._file_vois):
            why = validate_voi(voi, lo, hi) if voi.origin == "file" else None
            self.presets.addItem(voi_label(voi, i, why), voi)
            self.presets.setItemData(self.presets.count() - 1, _voi_tip(voi, why),
                                     Qt.ItemDataRole.ToolTipRole)
        for preset in self.user_presets:
            voi = VOI(preset.name, preset.center, preset.width, "LINEAR", origin="user")
            self.presets.addItem(voi_label(voi, 0), voi)
            self.presets.setItemData(self.presets.count() - 1, _voi_tip(voi, None),
                                     Qt.ItemDataRole.ToolTipRole)
        # The box names the window actually in use: the default one (a rejected file window is
        # never named as applied; the automatic one is).
        chosen = self.prepared.voi if self.prepared is not None else None

        def same(v: object) -> bool:
            return v is chosen or (isinstance(v, VOI) and chosen is not None and v.lut is None
                                   and (v.origin, v.explanation, v.center, v.width, v.function)
                                   == (chosen.origin, chosen.explanation, chosen.center,
                                       chosen.width, chosen.function))

        index = next((i for i in range(self.presets.count()) if same(self.presets.itemData(i))), -1)
        self.presets.setCurrentIndex(index if index >= 0 else (0 if self.presets.count() else -1))
        self.presets.blockSignals(False)

    # -- events ----------------------------------------------------------------------------
    def _on_presets_activated(self, index: int) -> None:
        voi = self.presets.itemData(index)
        if isinstance(voi, VOI):
            self.sig_voi_chosen.emit(voi)

    def choose_preset(self, index: int) -> bool:
        """Switch to the ``index``-th entry of the preset list (0-based), as if picked from it;
        False when there is no image or no such entry."""
        if not self.controls_enabled() or not 0 <= index < self.presets.count():
            return False
        self.presets.setCurrentIndex(index)
        self._on_presets_activated(index)
        return True

    def _on_auto_clicked(self) -> None:
        self.choose_auto()

    def choose_auto(self) -> None:
        """Switch to the histogram-based auto window."""
        for voi in self._file_vois:
            if voi.origin == "auto":
                self.sig_voi_chosen.emit(voi)
                return

    def _on_fields_edited(self) -> None:
        if self._updating or self.prepared is None:
            return
        self.state.set_window(
            WindowLevel(self.center.value(), max(self.width_box.value(), 1.0), "Manual", "user")
        )

    def _on_region_changed(self) -> None:
        if self._updating or self.prepared is None or not self.controls_enabled():
            return
        lo, hi = self.region.getRegion()
        if hi > lo:
            self.state.set_window(WindowLevel((lo + hi) / 2.0, hi - lo, "Manual", "user"))

    def _on_save_clicked(self) -> None:
        window = self.state.window
        if window is None:
            return
        name, ok = QInputDialog.getText(self, "Save window preset", "Name:")
        if ok and name.strip():
            self.add_user_preset(WindowPreset(name.strip(), window.center, window.width))

    def add_user_preset(self, preset: WindowPreset) -> None:
        self.user_presets = [p for p in self.user_presets if p.name != preset.name] + [preset]
        self._fill_presets()
        self.sig_presets_changed.emit(list(self.user_presets))

    def _on_delete_clicked(self) -> None:
        voi = self.presets.currentData()
        if isinstance(voi, VOI) and voi.origin == "user":
            self.user_presets = [p for p in self.user_presets if p.name != voi.explanation]
            self._fill_presets()
            self.sig_presets_changed.emit(list(self.user_presets))

    def _on_state_changed(self, name: str) -> None:
        if name == "window":
            self._show_window(self.state.window)

    def _show_window(self, window: WindowLevel | None) -> None:
        self._updating = True
        try:
            if window is None:
                self.note.setText("VOI LUT table in use (levels shown are approximate)")
                self.region.setVisible(False)
                return
            self.region.setVisible(True)
            self.center.setValue(window.center)
            self.width_box.setValue(window.width)
            self.region.setRegion((window.low, window.high))
            self.note.setText(f"{window.explanation or 'Manual'} ({window.origin})")
            if window.explanation == "Manual" and window.origin in ("user", "drag"):
                # A drag or typed values: no preset is in use any more, so none is named.
                self.presets.blockSignals(True)
                self.presets.setCurrentIndex(-1)
                self.presets.blockSignals(False)
        finally:
            self._updating = False

    def current_window_voi(self) -> WindowLevel | None:
        """The window shown, for tests and exports."""
        voi = self.presets.currentData()
        return voi_to_window(voi) if isinstance(voi, VOI) else self.state.window
