"""The headless demo's analysis part: every demo image through the models, then a screenshot of
a chest radiograph with the results panel and its heatmap overlay."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from collections.abc import Sequence

from viewer.services.analysis_types import AnalysisResult

CHEST_HINTS = ("RG1", "966")


def result_rows(name: str, value: AnalysisResult | str) -> list[dict[str, Any]]:
    """Per image x model summary rows (no patient data)."""
    if not isinstance(value, AnalysisResult):
        return [{"file": name, "model_id": "", "status": "error", "reason": str(value)}]
    rows = []
    for r in value.results:
        rows.append({
            "file": name, "model_id": r.model_id, "model_version": r.model_version,
            "status": r.status, "label": r.label,
            "confidence": None if r.confidence is None else round(r.confidence, 4),
            "band": r.band, "forced": r.forced, "reason": r.reason,
        })
    return rows


def demo_analysis(window: Any, records: Sequence[Any], screenshot: Path,
                  timeout_s: float = 300.0) -> dict[str, Any]:
    """Analyse ``records`` as a batch (waiting on signals), then show a chest image analysed
    with its overlay and save the window grab to ``screenshot``. Returns the summary block."""
    from viewer.ui.demo import wait_for

    ai = window.ai
    ctl = ai.controller
    collected: list[tuple[Any, Any]] = []

    def on_result(record: Any, value: object) -> None:
        collected.append((record, value))

    ctl.sig_batch_result_ready.connect(on_result)
    started = time.perf_counter()
    ctl.analyse_batch(list(records))
    finished = wait_for([ctl.sig_batch_finished], timeout_s)
    seconds = time.perf_counter() - started
    ctl.sig_batch_result_ready.disconnect(on_result)
    window.status.set_busy(False)
    rows: list[dict[str, Any]] = []
    for record, value in collected:
        rows.extend(result_rows(record.display_name, value))
    chest = next((r for hint in CHEST_HINTS for r in records if hint in r.display_name), None)
    shown = None
    if chest is not None:
        shown = _show_analysed(window, chest, timeout_s)
        window.window_panel.flush_histogram()
        window.grab().save(str(screenshot))
    sessions = ai.service.sessions
    return {
        "models": [{"id": m.id, "version": m.version} for m in ai.registry.available()],
        "unavailable": [{"id": e.id, "reason": e.reason} for e in ai.registry.unavailable()],
        "providers": sessions.providers(),
        "messages": sessions.messages(),
        "batch_finished": finished is not None,
        "batch_seconds": round(seconds, 2),
        "images_analysed": len(collected),
        "results": rows,
        "screenshot_image": None if chest is None else chest.display_name,
        "screenshot_result": shown,
    }


def _show_analysed(window: Any, record: Any, timeout_s: float) -> dict[str, Any] | None:
    from viewer.ui.demo import wait_for

    series = [r for r in window.library.records if r.series_uid == record.series_uid] or [record]
    window.grid.set_records(series)
    window.grid.select_row(series.index(record))  # shows it (and keeps the grid consistent)
    deadline = time.perf_counter() + timeout_s
    while window.ai.current_record is not record and time.perf_counter() < deadline:
        if wait_for([window.sig_image_displayed, window.images.sig_image_failed], 60) is None:
            return None
    window.ai.analyse_current(False)
    got = wait_for([window.ai.controller.sig_result_ready, window.ai.controller.sig_analysis_failed],
                   timeout_s)
    if got is None or got[0] != 0:
        return None
    dock = window.docks.get("ai_results")
    if dock is not None:
        dock.show()
        dock.raise_()
    overlays = window.docks.get("ai_overlays")
    if overlays is not None:
        overlays.raise_()
    best = window.ai.overlays.heat_source  # the map on screen (the reported finding's)
    return {"file": record.display_name,
            "heatmap_model": None if best is None else best.model_id,
            "heatmap_label": None if best is None else best.heatmap_label}
