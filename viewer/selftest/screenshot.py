"""Self-test, GUI part: render a radiograph with its Grad-CAM++ overlay offscreen and save a PNG.

Uses Qt's ``offscreen`` platform unless ``QT_QPA_PLATFORM`` is already set, so it runs on a
build server without a display. It draws with the viewer's own canvas
(:class:`viewer.ui.canvas.ImageCanvas`) when it can, else with plain pyqtgraph items, and then
checks the written file: right size, and not a blank picture.
"""

from __future__ import annotations

from viewer.core.messages import exception_words

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from viewer.selftest.report import Report

__all__ = ["check_screenshot"]

SIZE = (900, 700)


def _render_with_canvas(image: Any, heatmap: np.ndarray | None, mask: np.ndarray | None) -> Any:
    from viewer.state.display_plan import prepare_image
    from viewer.state.view_state import ViewState
    from viewer.ui.canvas import ImageCanvas

    if image.radiograph is None:
        raise RuntimeError("no Radiograph (project loader not used)")
    canvas = ImageCanvas(ViewState())
    canvas.resize(*SIZE)
    canvas.set_image(prepare_image(image.radiograph))
    if mask is not None:
        canvas.set_mask(mask)
    if heatmap is not None:
        canvas.set_heatmap(heatmap)
    return canvas


def _render_plain(image: Any, heatmap: np.ndarray | None) -> Any:
    import pyqtgraph as pg
    from PySide6.QtWidgets import QLabel

    from viewer import RESEARCH_NOTICE

    view = pg.GraphicsLayoutWidget()
    view.resize(*SIZE)
    box = view.addViewBox(lockAspect=True, invertY=True)
    box.addItem(pg.ImageItem(image.display, axisOrder="row-major", levels=(0, 255)))
    if heatmap is not None:
        rgba = np.zeros(heatmap.shape + (4,), dtype=np.uint8)
        rgba[..., 0] = 255
        rgba[..., 1] = (heatmap * 160).astype(np.uint8)
        rgba[..., 3] = (heatmap * 140).astype(np.uint8)
        box.addItem(pg.ImageItem(rgba, axisOrder="row-major"))
    box.autoRange(padding=0.02)
    QLabel(RESEARCH_NOTICE, view).move(8, 8)
    return view


def check_screenshot(report: Report, shown: dict[str, Any], out_dir: Path) -> Path | None:
    """Render ``shown["image"]`` (+ heatmap/mask) offscreen to ``out_dir/selftest-screenshot.png``."""
    image = shown.get("image")
    if image is None:
        report.add("screenshot", "render", "fail", "nothing to show (no decoded image)")
        return None
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.perf_counter()
    try:
        import pyqtgraph as pg
        from PySide6.QtGui import QImage
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance() or QApplication(["radview-selftest"])
        pg.setConfigOptions(imageAxisOrder="row-major")
        try:
            widget = _render_with_canvas(image, shown.get("heatmap"), shown.get("mask"))
            how = "viewer.ui.canvas.ImageCanvas"
        except Exception as exc:
            report.add("screenshot", "canvas", "info", f"viewer canvas not used ({exception_words(exc)})"[:200])
            widget = _render_plain(image, shown.get("heatmap"))
            how = "pyqtgraph"
        widget.show()
        for _ in range(5):
            app.processEvents()
        path = out_dir / "selftest-screenshot.png"
        if not widget.grab().save(str(path)):
            raise OSError(f"could not write {path}")
        widget.close()
        widget.deleteLater()
        app.processEvents()
        check = QImage(str(path))
        sample = np.array([check.pixel(x, y) for x in range(0, check.width(), 7) for y in range(0, check.height(), 7)])
        distinct = len(np.unique(sample))
    except Exception as exc:
        report.add("screenshot", "render", "fail", exception_words(exc)[:300], time.perf_counter() - t0)
        return None
    problem = ""
    if (check.width(), check.height()) != SIZE:
        problem = f"screenshot is {check.width()}x{check.height()}, expected {SIZE[0]}x{SIZE[1]}"
    elif distinct < 16:
        problem = f"screenshot looks blank ({distinct} distinct colours)"
    detail = problem or f"{path} ({how}, {check.width()}x{check.height()}, {distinct} colours sampled)"
    report.add("screenshot", "render", "fail" if problem else "ok", detail, time.perf_counter() - t0)
    return path
