"""Status bar: scan progress with cancel, pixel readout and measurement text."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStatusBar,
    QWidget,
)

from viewer.ui.canvas import PixelProbe


def probe_text(probe: PixelProbe | None) -> str:
    """Status text for the pixel under the cursor: stored and modality values, and the
    position in mm with the attribute the spacing came from."""
    if probe is None:
        return ""
    if probe.pending:  # a provisional stand-in is on screen (progressive display)
        return f"x {probe.col}  y {probe.row}  (full resolution still loading)"
    stored = "/".join(f"{v:g}" for v in probe.stored)
    parts = [f"x {probe.col}  y {probe.row}", f"stored {stored}"]
    if probe.modality is not None:
        units = f" {probe.units}" if probe.units else ""
        parts.append(f"modality {probe.modality:g}{units}")
    if probe.spacing_mm is not None:
        x_mm, y_mm = probe.col * probe.spacing_mm[1], probe.row * probe.spacing_mm[0]
        parts.append(f"{x_mm:.1f}, {y_mm:.1f} mm ({probe.spacing_kind or 'PixelSpacing'})")
    else:
        parts.append("no pixel spacing")
    return "   ".join(parts)


class StatusPanel(QStatusBar):
    """The window's status bar. ``sig_frame_chosen(index)`` (0-based) when the user picks a
    frame of a multi-frame image in the "frame i / n" box."""

    sig_cancel_requested = Signal()
    sig_frame_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pixel_label = QLabel("")
        self.pixel_label.setObjectName("pixelReadout")
        # Text changes must not ask the window for a new layout.
        self.pixel_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        # Narrow minimums so the window fits a 1024-px screen; both grow with the window.
        self.pixel_label.setMinimumWidth(120)
        self.measure_label = QLabel("")
        self.measure_label.setMinimumWidth(110)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelScan")
        self.cancel_button.clicked.connect(self.sig_cancel_requested)
        self.frame_spin = QSpinBox()
        self.frame_spin.setObjectName("frameSpin")
        self.frame_spin.setPrefix("frame ")
        self.frame_spin.setKeyboardTracking(False)
        self.frame_spin.setFixedWidth(130)  # no relayout of the window when the count changes
        self.frame_spin.setToolTip("Frame of a multi-frame image (, and . or Ctrl+Up/Down)")
        self.frame_spin.valueChanged.connect(self._on_frame_spin_value_changed)
        self.set_frames(0, 1)
        self.addWidget(self.pixel_label, 1)
        self.addPermanentWidget(self.frame_spin)
        self.addPermanentWidget(self.measure_label)
        self.addPermanentWidget(self.progress)
        self.addPermanentWidget(self.cancel_button)
        self.set_busy(False)

    def set_busy(self, busy: bool, text: str = "") -> None:
        # Enable/disable rather than show/hide: showing or hiding status-bar widgets relays out
        # the whole main window (~35 ms here) at the end of every scan.
        self.progress.setEnabled(busy)
        self.cancel_button.setEnabled(busy)
        self.busy = busy
        # No busy animation (range 0..0): it repaints continuously; the first progress report
        # arrives within milliseconds anyway.
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m" if busy else "idle")
        if text:
            self.show_text(text)

    def set_frames(self, index: int, count: int) -> None:
        """Show "frame index+1 / count"; the box is disabled for single-frame images."""
        count = max(1, int(count))
        self.frame_spin.blockSignals(True)
        self.frame_spin.setRange(1, count)
        self.frame_spin.setSuffix(f" / {count}")
        self.frame_spin.setValue(min(max(int(index), 0), count - 1) + 1)
        self.frame_spin.blockSignals(False)
        self.frame_spin.setEnabled(count > 1)

    def frame_text(self) -> str:
        """The frame box as shown, e.g. "frame 2 / 5"."""
        return self.frame_spin.text()

    def _on_frame_spin_value_changed(self, value: int) -> None:
        self.sig_frame_chosen.emit(value - 1)

    def show_text(self, text: str) -> None:
        """A status message in the stretch label (QStatusBar.showMessage relays out the window,
        ~30-50 ms here)."""
        self.pixel_label.setText(text)

    def set_progress(self, done: int, total: int) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))

    def show_probe(self, probe: PixelProbe | None) -> None:
        """Show the pixel under the cursor (connected to ``ImageCanvas.sig_pixel_hovered``)."""
        self.pixel_label.setText(probe_text(probe))

    def show_measurement(self, text: str) -> None:
        """Show the last measurement drawn or edited (ruler or any measurement tool)."""
        self.measure_label.setText(text)
        self.measure_label.setToolTip(text)  # whole, when the label is narrower than the text
