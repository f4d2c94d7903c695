""""What the model saw": the preprocessed input (resized, grey) of each model for the shown image."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from viewer.services.analysis_types import AnalysisResult
from viewer.ui.thumbnails import array_to_qimage


def view_to_u8(view: np.ndarray) -> np.ndarray:
    """A model view (uint8, or float in [0, 1] or normalised) as a uint8 grey image."""
    arr = np.asarray(view)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) / (hi - lo) * 255).astype(np.uint8)


class ModelInputView(QWidget):
    """Shows ``ModelResult.model_view`` for the chosen model of the current result."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelInputView")
        layout = QVBoxLayout(self)
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("modelInputModel")
        self.image = QLabel("No analysis yet.")
        self.image.setObjectName("modelInputImage")
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setMinimumSize(160, 160)
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        layout.addWidget(self.model_combo)
        layout.addWidget(self.image, 1)
        layout.addWidget(self.caption)
        self._views: dict[str, Any] = {}
        self.model_combo.currentIndexChanged.connect(self._on_model_combo_changed)

    def set_result(self, result: AnalysisResult | None) -> None:
        self._views = {}
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        if result is not None:
            for r in result.results:
                if r.model_view is not None:
                    self._views[r.model_id] = r
                    self.model_combo.addItem(r.model_id)
        self.model_combo.blockSignals(False)
        self._on_model_combo_changed(0)

    def shown_array(self) -> np.ndarray | None:
        res = self._views.get(self.model_combo.currentText())
        return None if res is None else view_to_u8(res.model_view)

    def _on_model_combo_changed(self, _index: int) -> None:
        arr = self.shown_array()
        if arr is None:
            self.image.setPixmap(QPixmap())
            self.image.setText("No model input (no analysis of this image yet).")
            self.caption.setText("")
            return
        pix = QPixmap.fromImage(array_to_qimage(arr))
        self.image.setPixmap(pix.scaled(256, 256, Qt.AspectRatioMode.KeepAspectRatio,
                                        Qt.TransformationMode.FastTransformation))
        self.caption.setText(f"{self.model_combo.currentText()}: {arr.shape[1]} x {arr.shape[0]} "
                             "px as the model received it (before normalisation)")
