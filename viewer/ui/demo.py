"""Headless demo: open a folder, show every image once, write a screenshot and a summary.

Used by ``radview --demo DIR`` when there is no display (``make run`` on CI-like machines) and
by ``radview --screenshot PATH``. Waits on signals with local event loops (no sleeping).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QTimer, SignalInstance

from viewer import RESEARCH_NOTICE, __version__
from viewer.state.display_plan import PreparedImage
from viewer.ui.main_window import MainWindow


def wait_for(signals: list[SignalInstance], timeout_s: float) -> tuple[int, tuple[Any, ...]] | None:
    """Run the event loop until one of ``signals`` fires; ``(which, args)`` or ``None`` on
    timeout. Connect before triggering the work (queued deliveries wait for the loop)."""
    loop = QEventLoop()
    hit: list[tuple[int, tuple[Any, ...]]] = []
    slots = []
    for i, signal in enumerate(signals):
        def slot(*args: Any, _i: int = i) -> None:
            if not hit:
                hit.append((_i, args))
            loop.quit()
        signal.connect(slot)
        slots.append((signal, slot))
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(int(timeout_s * 1000))
    loop.exec()
    timer.stop()
    for signal, slot in slots:
        signal.disconnect(slot)
    return hit[0] if hit else None


def image_summary(record: Any, prepared: PreparedImage, window: Any, ms: float) -> dict[str, Any]:
    """Per-image entry of the demo summary (no patient data)."""
    rg = prepared.radiograph
    voi = prepared.voi
    entry: dict[str, Any] = {
        "file": record.display_name,
        "size": [rg.cols, rg.rows],
        "modality": rg.modality or record.modality,
        "body_part": rg.body_part or record.body_part,
        "photometric": rg.photometric,
        "bits_stored": rg.bits_stored,
        "transfer_syntax": record.transfer_syntax_uid,
        "spacing_mm": list(rg.spacing_mm) if rg.spacing_mm else None,
        "spacing_kind": rg.spacing_kind,
        "display_ms": round(ms, 1),
        "window": {
            "explanation": voi.explanation,
            "origin": voi.origin,
            "function": voi.function,
            "center": None if window is None else round(window.center, 3),
            "width": None if window is None else round(window.width, 3),
            "voi_lut": voi.lut is not None,
        },
        "windows_offered": len(rg.vois),
    }
    return entry


def run_demo(window: MainWindow, folder: str, out_dir: Path, all_images: bool = True,
             hide_overlay: bool = False, timeout_s: float = 300.0) -> dict[str, Any]:
    """Open ``folder``, wait for the scan and the first image, grab a screenshot; then show
    each image once to record what was displayed. Returns the summary (also written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if hide_overlay:
        window.action_map["overlay"].setChecked(False)
    lib = window.library
    window.open_paths([folder])
    if wait_for([lib.sig_scan_finished, lib.sig_scan_failed], timeout_s) is None:
        raise TimeoutError("scan did not finish")
    scan_s = time.perf_counter() - started
    images: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    if lib.records:
        if window.canvas.prepared is None:
            got = wait_for([window.sig_image_displayed, window.images.sig_image_failed], 120)
            if got is None:
                raise TimeoutError("first image was not displayed")
        if window.grid.pending():
            wait_for([window.grid.sig_thumbnails_idle], 120)
    screenshot = out_dir / "demo-screenshot.png"
    window.window_panel.flush_histogram()
    window.grab().save(str(screenshot))
    first = window.images.current
    if all_images:
        for record in lib.records:
            window.images.show(record)
            got = wait_for([window.sig_image_displayed, window.images.sig_image_failed], 120)
            if got is None:
                failures.append({"file": record.display_name, "reason": "timeout"})
            elif got[0] == 0:
                images.append(image_summary(record, got[1][1], window.view_state.window,
                                            window.last_display_ms))
            else:
                failures.append({"file": record.display_name, "reason": str(got[1][1])})
        if first is not None:
            window.grid.select_row(0)
    analysis = None
    if getattr(window, "ai", None) is not None and lib.records:
        from viewer.ui.ai_demo import demo_analysis

        analysis = demo_analysis(window, lib.records, screenshot, timeout_s)
    patients, studies, series = window.browser.counts()
    summary: dict[str, Any] = {
        "radview": __version__,
        "notice": RESEARCH_NOTICE,
        "folder": str(folder),
        "files_scanned": lib.files_seen,
        "images": len(lib.records),
        "patients": patients,
        "studies": studies,
        "series": series,
        "scan_seconds": round(scan_s, 3),
        "problems": [
            {"file": row[0].rsplit("/", 1)[-1], "reason": row[1], "transfer_syntax": row[2],
             "advice": row[3]}
            for row in window.load_report.rows()
        ],
        "displayed": images,
        "display_failures": failures,
        "screenshot": str(screenshot),
        "analysis": analysis,
    }
    (out_dir / "demo-summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def take_screenshot(window: MainWindow, paths: list[str], target: Path,
                    timeout_s: float = 300.0) -> bool:
    """Open ``paths``, wait for the first image and the visible thumbnails, save a grab of the
    window (patient overlay hidden). Returns whether an image was shown."""
    window.action_map["overlay"].setChecked(False)
    lib = window.library
    window.open_paths(paths)
    wait_for([lib.sig_scan_finished, lib.sig_scan_failed], timeout_s)
    shown = window.canvas.prepared is not None and not window.canvas.provisional
    if lib.records and not shown:
        shown = wait_for([window.sig_image_displayed], 120) is not None
    if window.grid.pending():
        wait_for([window.grid.sig_thumbnails_idle], 120)
    target.parent.mkdir(parents=True, exist_ok=True)
    window.window_panel.flush_histogram()
    window.grab().save(str(target))
    return shown
