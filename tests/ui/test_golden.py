"""Golden screenshots of the canvas with tolerances.

Regenerate after an intended change with ``RADVIEW_UPDATE_GOLDEN=1 pytest tests/ui/test_golden.py``
and review the PNGs in ``tests/golden/`` before committing them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtGui import QImage

from tests.ui.helpers import gradient_radiograph, shown_canvas
from viewer.core.radiograph import VOI
from viewer.state.display_plan import prepare_image, voi_to_window
from viewer.state.view_state import Orientation
from viewer.ui.canvas import ImageCanvas

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("RADVIEW_UPDATE_GOLDEN") == "1"


def qimage_to_array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = image.width(), image.height(), image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), dtype=np.uint8, count=h * bpl).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


def compare_golden(name: str, image: QImage) -> None:
    """Mean absolute difference <= 2 levels and at most 1 % of pixels off by more than 40."""
    path = GOLDEN / f"{name}.png"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"golden {path.name} missing: run with RADVIEW_UPDATE_GOLDEN=1")
        GOLDEN.mkdir(parents=True, exist_ok=True)
        image.save(str(path))
        return
    got = qimage_to_array(image).astype(np.int16)
    want = qimage_to_array(QImage(str(path))).astype(np.int16)
    assert got.shape == want.shape, f"size {got.shape} != golden {want.shape}"
    diff = np.abs(got - want)
    far = float((diff.max(axis=2) > 40).mean())
    assert diff.mean() <= 2.0 and far <= 0.01, f"{name}: mean {diff.mean():.2f}, far {far:.3%}"


@pytest.fixture
def canvas(qtbot: Any) -> ImageCanvas:
    widget = shown_canvas(qtbot, 320, 240)
    widget.notice_label.hide()  # text rendering differs between machines; tested elsewhere
    widget.overlay_label.hide()
    widget.info_enabled = False
    return widget


def _render(canvas: ImageCanvas, **kwargs: Any) -> QImage:
    voi = VOI("W", center=2000.0, width=3000.0)
    prepared = prepare_image(gradient_radiograph(rows=60, cols=90, vois=(voi,), **kwargs))
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi)
    return prepared


def test_golden_monochrome1(canvas: ImageCanvas) -> None:
    _render(canvas, photometric="MONOCHROME1")
    compare_golden("canvas_monochrome1", canvas.view.grab().toImage())


def test_golden_rotated_with_overlays(canvas: ImageCanvas) -> None:
    _render(canvas)
    canvas.state.set_orientation(Orientation(1, True, False))
    mask = np.zeros((60, 90), dtype=np.uint8)
    mask[5:25, 50:80] = 1
    canvas.set_mask(mask, opacity=0.5)
    heat = np.zeros((60, 90), dtype=np.float32)
    heat[30:55, 10:40] = np.linspace(0, 1, 30, dtype=np.float32)
    canvas.set_heatmap(heat, opacity=0.7)
    compare_golden("canvas_rotated_overlays", canvas.view.grab().toImage())
