"""File > Export: the view "as seen" as PNG (a grab of the widgets); results as CSV/JSON, DICOM SEG
and Secondary Capture are the Qt-free :mod:`viewer.services.ai_exports`, re-exported here.

Everything goes where the user says (a file dialog) and never into a study folder: the services
refuse such a destination (``ExportError``) and the message is shown to the user. CSV/JSON rows
carry the model version, threshold, calibrated probability, forced flag and research notice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Iterable

import numpy as np
from PySide6.QtGui import QImage

# The Qt-free exports live in the service; re-exported for the window's callers.
from viewer.services.ai_exports import (
    ExportError, export_heatmap_capture, export_results, export_segmentation, heatmap_view,
    pixel_text_warning, study_folders,
)
from viewer.services.export import write_png

__all__ = ["ExportError", "study_folders", "export_results", "grab_rgb", "export_png",
           "export_segmentation", "export_heatmap_capture", "heatmap_view", "pixel_text_warning"]


def grab_rgb(widget: Any) -> np.ndarray:
    """The widget as rendered on screen, as an (H, W, 3) uint8 array."""
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def export_png(view_widget: Any, dest: Path, folders: Iterable[Path], *,
               deidentify: bool = False) -> Path:
    """PNG of the current view (window/level, orientation, overlays) with the notice burnt in.

    ``deidentify``: the patient overlay (name, ID, dates in the corner text) is hidden for the
    grab whatever the screen shows, and shown again after it."""
    if getattr(view_widget, "provisional", False):  # a progressive-display stand-in
        raise ExportError("The full-resolution image is still loading: export it when it is shown.")
    label = getattr(view_widget, "overlay_label", None)
    hide = label if deidentify and label is not None and label.isVisible() else None
    if hide is not None:
        hide.setVisible(False)
    # The measurements are drawn in the view and so are in the PNG; a selected item's edit
    # handles are not.
    measurements = getattr(view_widget, "measurements", None)
    if measurements is not None:
        measurements.set_handles_visible(False)
    try:
        # The image view only: the on-screen notice strip under it is replaced by the export's
        # own strip (write_png), not doubled.
        rgb = grab_rgb(getattr(view_widget, "view", view_widget))
    finally:
        if hide is not None:
            hide.setVisible(True)
        if measurements is not None:
            measurements.set_handles_visible(True)
    return write_png(rgb, Path(dest), tuple(folders))
