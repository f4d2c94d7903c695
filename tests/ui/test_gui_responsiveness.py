"""What keeps the GUI thread responsive (bench.gui_probe: never blocked > 50 ms): the start-up
heap is kept out of full garbage collections, background threads run below the GUI thread's
priority, and the histogram is drawn on a later event-loop turn than the image."""

from __future__ import annotations

import gc
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import dicom_factory
from tests.ui.helpers import open_and_wait
from viewer.services.tasks import BACKGROUND_NICENESS as WORKER_NICENESS
from viewer.ui.task_bridge import TaskBridge, TaskRequest


def test_window_freezes_the_startup_heap_until_shutdown(make_window: Any) -> None:
    window = make_window()
    assert gc.get_freeze_count() > 10_000  # modules, Qt wrappers, the window
    window.shutdown()
    assert gc.get_freeze_count() == 0  # handed back to the collector


def _own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_bridge_workers_run_below_the_gui_thread(qtbot: Any) -> None:
    bridge = TaskBridge(max_workers=1)
    try:
        with qtbot.waitSignal(bridge.sig_task_finished, timeout=5000) as blocker:
            bridge.submit(TaskRequest("nice", _own_nice, with_progress=False))
        assert blocker.args[2] == min(19, _own_nice() + WORKER_NICENESS)
        assert _own_nice() == os.getpriority(os.PRIO_PROCESS, os.getpid())  # GUI thread untouched
    finally:
        bridge.shutdown()


def _ramp_dicom(folder: Path) -> Path:
    """A 12-bit horizontal ramp (80 distinct values) for histogram tests."""
    return dicom_factory.write_dicom(
        folder / "ramp.dcm", np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (40, 1)),
        bits_stored=12,
    )


def test_histogram_follows_the_image_on_a_later_turn(qtbot: Any, make_window: Any,
                                                     tmp_path: Path) -> None:
    path = _ramp_dicom(tmp_path / "h")
    window = make_window()
    panel = window.window_panel
    assert not panel.controls_enabled() and panel.plot.isEnabled()
    assert not panel.region.movable  # no image: the region cannot be dragged
    open_and_wait(qtbot, window, [str(path)])
    prepared = window.canvas.prepared
    qtbot.waitUntil(lambda: len(panel.curve.xData) == len(prepared.hist_edges), timeout=5000)
    np.testing.assert_allclose(panel.curve.xData, prepared.hist_edges)
    assert panel.controls_enabled() and panel.region.movable

    # Opening something else disables the controls at once; the plot itself never changes its
    # enabled state (that repainted it), and the histogram is cleared on a later turn.
    window.open_paths([str(tmp_path / "missing")])
    assert not panel.controls_enabled() and panel.plot.isEnabled()
    assert len(panel.curve.xData) == len(prepared.hist_edges)  # not yet
    qtbot.waitUntil(lambda: len(panel.curve.xData) == 2, timeout=5000)
    assert not panel.region.movable


def test_flush_histogram_draws_a_pending_histogram_now(qtbot: Any, make_window: Any,
                                                       tmp_path: Path) -> None:
    path = _ramp_dicom(tmp_path / "f")
    window = make_window()
    open_and_wait(qtbot, window, [str(path)])
    panel = window.window_panel
    panel.set_image(None)
    panel.set_image(window.canvas.prepared)  # restarts the timer
    panel.flush_histogram()
    assert len(panel.curve.xData) == len(window.canvas.prepared.hist_edges)


class _Rec:
    def __init__(self, i: int) -> None:
        self.path, self.member = f"/x/{i}.dcm", None
        self.key = (self.path, None)
        self.display_name, self.modality, self.body_part = f"{i}.dcm", "CR", "CHEST"
        self.cols = self.rows = 8


def test_thumbnail_icons_are_announced_together(qtbot: Any) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage

    from viewer.ui.thumbnails import ICON_FLUSH_MS, ThumbnailGrid

    bridge = TaskBridge(max_workers=1)
    grid = ThumbnailGrid(bridge, lambda rec: None, size=16)
    qtbot.addWidget(grid)
    try:
        records = [_Rec(i) for i in range(10)]
        grid.thumb_model.set_records(records)
        changed: list[tuple[int, int]] = []
        grid.thumb_model.dataChanged.connect(
            lambda a, b, roles: changed.append((a.row(), b.row())))
        image = QImage(16, 16, QImage.Format.Format_Grayscale8)
        image.fill(128)
        for row in (2, 0, 1, 7):
            grid.thumb_model.set_icon(records[row].key, image)
        assert changed == []  # nothing announced (and so nothing repainted) per icon
        icon = grid.thumb_model.index(1).data(Qt.ItemDataRole.DecorationRole)
        assert icon.cacheKey() == grid.thumb_model.icons[records[1].key].cacheKey()  # in place
        qtbot.waitUntil(lambda: bool(changed), timeout=ICON_FLUSH_MS * 20)
        assert changed == [(0, 2), (7, 7)]  # one range per run of rows, never over row 3-6
        grid.thumb_model.set_icon(records[4].key, image)
        grid.thumb_model.flush_icons()
        assert changed[-1] == (4, 4)
    finally:
        bridge.shutdown()
