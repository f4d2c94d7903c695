"""LibraryController: a finished scan reaches the Load Report, the browser and the window in
separate event-loop turns (one turn for all of them stalled the window on 20,000 files)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QTimer

from tests.dicom_factory import write_dicom
from viewer.services.library import scan_paths
from viewer.ui.library_controller import LibraryController
from viewer.ui.task_bridge import TaskBridge


def test_scan_results_are_handed_out_one_event_loop_turn_each(qtbot: Any, tmp_path: Path) -> None:
    write_dicom(tmp_path / "good.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    (tmp_path / "notes.dcm").write_bytes(b"not a DICOM file at all")
    bridge = TaskBridge(max_workers=1)
    try:
        lib = LibraryController(bridge, partial(scan_paths, workers=1))
        events: list[str] = []

        def on(name: str, *_: Any) -> None:
            events.append(name)
            # A zero timer posted now runs before any step scheduled after this handler.
            QTimer.singleShot(0, lambda: events.append(f"turn after {name}"))

        lib.sig_problems_found.connect(partial(on, "problems"))
        lib.sig_tree_changed.connect(partial(on, "tree"))
        lib.sig_scan_finished.connect(partial(on, "finished"))
        with qtbot.waitSignal(lib.sig_scan_finished, timeout=20000):
            lib.open_paths([str(tmp_path)])
        qtbot.waitUntil(lambda: len(events) == 6, timeout=5000)
        assert events == ["problems", "turn after problems", "tree", "turn after tree",
                          "finished", "turn after finished"]
        # The state was complete before the first signal: a handler may read any of it.
        assert len(lib.records) == 1 and lib.problem_count == 1 and len(lib.tree) == 1
    finally:
        bridge.shutdown()
