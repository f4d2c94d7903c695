"""What is on screen is always the image, patient and result selected (issue 16, first part):
image, overlays, window/level, panel and readouts change together or clear together, with a
visible message when an image cannot be shown. Real widgets, tiny generated models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import dicom_factory
from tests.inference.tiny_models import make_model_set
from tests.ui.test_ai_features import _analyse, _chest_like, _open
from viewer.ui.status_bar import probe_text


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_set(tmp_path_factory.mktemp("state_models") / "chest")


def _write(folder: Path, name: str, patient: str, series: str, n: int = 1) -> list[Path]:
    return [dicom_factory.write_dicom(folder / f"{name}{i}.dcm", _chest_like(seed=i + len(name)),
                                      bits_stored=12, PatientName=f"{patient}^Test", PatientID=patient,
                                      BodyPartExamined="CHEST", InstanceNumber=i + 1,
                                      StudyInstanceUID=f"1.2.826.0.1.3680043.8.498.{len(patient)}",
                                      SeriesInstanceUID=series)
            for i in range(n)]


def test_good_then_undecodable_clears_everything(qtbot: Any, ai_window: Any, models: Path,
                                                 tmp_path: Path) -> None:
    folder = tmp_path / "study"
    (good,) = _write(folder, "good", "AAA", "1.2.3.1")
    (src,) = _write(tmp_path / "src", "bad", "BBB", "1.2.3.2")
    dicom_factory.write_truncated(src, folder / "bad0.dcm", keep=src.stat().st_size - 4000)
    window = ai_window(models)
    _open(qtbot, window, folder)
    ai = window.ai
    first = window.images.current
    assert first is not None and first.path.endswith("good0.dcm")
    _analyse(qtbot, window)
    assert ai.overlays.mask_data is not None and ai.panel.tree.topLevelItemCount() > 0
    bad = next(r for r in window.library.records if r.path.endswith("bad0.dcm"))
    with qtbot.waitSignal(window.sig_image_cleared, timeout=20000) as blocker:
        window.images.show(bad)
    assert blocker.args[0] is bad
    # the canvas says why it is empty
    assert window.canvas.radiograph is None and window.canvas.message_label.isVisible()
    assert "Cannot display this image" in window.canvas.message_label.text()
    # no previous patient's result, overlay, window or readout
    assert ai.current_record is None and ai.controller.current_result is None
    assert ai.overlays.mask_data is None and ai.overlays.heatmap is None
    assert window.canvas.mask_layer.item.image is None or not window.canvas.mask_layer.item.isVisible()
    assert ai.panel.tree.topLevelItemCount() == 0 and "No image on screen" in ai.panel.state_label.text()
    assert window.window_panel.prepared is None
    # Ctrl+R has nothing to analyse and paints nothing
    assert ai.analyse_current(False) == 0 and ai.last_message == "No image to analyse."
    # back to the good image: everything is the good image's again
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.images.show(first)
    assert not window.canvas.message_label.isVisible() and window.window_panel.prepared is not None


def test_selecting_another_patients_series_shows_its_image(qtbot: Any, ai_window: Any,
                                                           models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    _write(folder / "a", "hand", "AAA", "1.2.3.10", n=1)
    _write(folder / "b", "hip", "BBB", "1.2.3.20", n=3)
    window = ai_window(models)
    _open(qtbot, window, folder)
    shown = window.images.current
    other = [r for r in window.library.records if r.patient_id != shown.patient_id]
    assert len(other) in (1, 3)
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000) as blocker:
        window.browser.sig_records_selected.emit(other)  # what a click on the series sends
    assert blocker.args[0].patient_id == other[0].patient_id != shown.patient_id
    assert window.ai.current_record.patient_id == other[0].patient_id


def test_batch_result_reaches_the_panel_of_the_image_on_screen(qtbot: Any, ai_window: Any,
                                                               models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    _write(folder, "img", "CCC", "1.2.3.30", n=3)
    window = ai_window(models)
    _open(qtbot, window, folder)
    ai = window.ai
    assert ai.panel.tree.topLevelItemCount() == 0  # "Not analysed yet"
    with qtbot.waitSignal(ai.controller.sig_batch_finished, timeout=30000):
        ai.analyse_shown()
    current = window.images.current
    badge = window.grid.thumb_model.badges[current.key]
    assert badge and ai.panel.tree.topLevelItemCount() > 0
    label = ai.controller.results[current.key].result("pneumonia").label
    panel_text = " ".join(ai.panel.tree.topLevelItem(i).text(0) + ai.panel.tree.topLevelItem(i).text(1)
                          for i in range(ai.panel.tree.topLevelItemCount()))
    assert label in badge and label in panel_text


def test_pixel_readout_is_cleared_when_the_image_changes(qtbot: Any, ai_window: Any, models: Path,
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "readout"
    _write(folder, "img", "DDD", "1.2.3.40", n=2)
    window = ai_window(models)
    _open(qtbot, window, folder)
    window.status.pixel_label.setText("x 10 y 12: 1234 (stale)")
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.step_image(1)
    assert window.status.pixel_label.text() == probe_text(None)


def test_header_dock_of_a_jpeg_says_it_has_no_dicom_header(qtbot: Any, ai_window: Any,
                                                           models: Path, tmp_path: Path) -> None:
    import cv2

    folder = tmp_path / "jpeg"
    folder.mkdir()
    cv2.imwrite(str(folder / "chest.jpg"), (_chest_like() // 16).astype("uint8"))
    window = ai_window(models)
    window.docks["header"].show()
    window.images.header_wanted = True
    with qtbot.waitSignal(window.images.sig_header_ready, timeout=20000) as blocker:
        _open(qtbot, window, folder)
    assert blocker.args[1] is None and "no DICOM header" in blocker.args[2]
    model = window.header_view.model
    texts = [model.item(r, c).text() for r in range(model.rowCount()) for c in range(4) if model.item(r, c)]
    assert not any("(D8FF" in t or "(private)" in t for t in texts)
    assert any("no DICOM header" in t for t in texts)


def test_a_heatmap_mostly_outside_the_lungs_is_flagged(qtbot: Any) -> None:
    from viewer.services.analysis_types import OK, AnalysisResult, Measurement, ModelResult
    from viewer.ui.results_panel import ResultsPanel

    panel = ResultsPanel()
    qtbot.addWidget(panel)
    for share, warned in ((0.19, True), (0.8, False)):
        declared = Measurement("covid.heatmap_share.lung_field", "heatmap_share", "covid",
                               "lung_field", share, source="lungs")
        res = ModelResult("covid", "3", "classification", OK, label="covid",
                          probabilities={"normal": 0.1, "covid": 0.9}, confidence=0.9, band="green",
                          threshold=0.5, positive_label="covid", measurements=(declared,))
        panel.set_result(AnalysisResult("img", "/x.dcm", (10, 10), None, (res,)), {})
        head = panel.tree.topLevelItem(0)
        rows = " ".join(head.child(i).text(0) for i in range(head.childCount()))
        assert ("of the heatmap lies in the lungs" in rows) is warned


def test_add_folder_keeps_what_is_open(qtbot: Any, ai_window: Any, models: Path, tmp_path: Path) -> None:
    """Issue 16: opening more replaced the library; File > Add Folder merges into it."""
    _write(tmp_path / "a", "one", "AAA", "1.2.3.50", n=2)
    _write(tmp_path / "b", "two", "BBB", "1.2.3.60", n=1)
    window = ai_window(models)
    _open(qtbot, window, tmp_path / "a")
    shown = window.images.current
    with qtbot.waitSignal(window.library.sig_scan_finished, timeout=20000):
        window.add_paths([str(tmp_path / "b")])
    assert sorted(r.patient_id for r in window.library.records) == ["AAA", "AAA", "BBB"]
    assert window.images.current is shown and window.canvas.radiograph is not None
    assert window.action_map["add_folder"] in window.menuBar().actions()[0].menu().actions()


def test_heatmap_low_end_is_transparent_and_has_a_legend(qtbot: Any) -> None:
    """Issue 16: the heatmap's low end laid a purple veil over the whole film; no legend."""
    import numpy as np

    from viewer.ui.overlay_panel import HEAT_TRANSPARENT_BELOW, OverlayPanel, heatmap_rgba

    heat = np.array([[0.0, 0.1, HEAT_TRANSPARENT_BELOW, 0.6, 1.0]], np.float32)
    alpha = heatmap_rgba(heat, "inferno")[0, :, 3]
    assert list(alpha[:3]) == [0, 0, 0] and 0 < alpha[3] < 255 and alpha[4] == 255

    class _Canvas:
        def __getattr__(self, name: str) -> Any:
            return lambda *a, **k: None

    panel = OverlayPanel(_Canvas())
    qtbot.addWidget(panel)
    pix = panel.legend.pixmap()
    assert not pix.isNull() and pix.width() > pix.height()
    first = pix.toImage().pixelColor(0, 0)
    last = pix.toImage().pixelColor(pix.width() - 1, 0)
    assert first.lightness() < last.lightness()  # low (dark) on the left, high on the right


def test_load_report_gives_the_room_back_when_there_are_no_problems(qtbot: Any, ai_window: Any,
                                                                    models: Path, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    _write(tmp_path / "bad", "ok", "AAA", "1.2.3.70", n=1)
    (tmp_path / "bad" / "junk.dcm").write_bytes(b"not dicom " * 50)
    _write(tmp_path / "clean", "ok", "BBB", "1.2.3.80", n=1)
    window = ai_window(models)
    window.show()
    _open(qtbot, window, tmp_path / "bad")
    qtbot.waitUntil(lambda: window.load_report.count() > 0, timeout=10000)
    assert not window.docks["report"].isHidden()
    _open(qtbot, window, tmp_path / "clean")
    qtbot.waitUntil(lambda: window.docks["report"].isHidden(), timeout=10000)


def test_neighbours_are_prefetched_so_next_comes_from_the_cache(qtbot: Any, ai_window: Any,
                                                                models: Path, tmp_path: Path) -> None:
    """Issue 16: next/previous waited for the decoder every time; the neighbours of the image
    shown are decoded in the background into the image cache."""
    _write(tmp_path / "p", "img", "EEE", "1.2.3.90", n=3)
    window = ai_window(models)
    _open(qtbot, window, tmp_path / "p")
    records = list(window.grid.thumb_model.records)
    shown = window.images.current
    row = records.index(shown)
    neighbour = records[row + 1] if row + 1 < len(records) else records[row - 1]
    cache = window.images.cache
    qtbot.waitUntil(lambda: neighbour.key in cache, timeout=10000)
    calls: list[Any] = []
    original = window.images.load_fn
    window.images.load_fn = lambda rec, frame=0: calls.append(rec) or original(rec, frame)
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000) as blocker:
        window.images.show(neighbour)
    assert blocker.args[0] is neighbour and neighbour not in calls  # from the cache, no decode


def test_one_key_hides_every_panel_and_brings_them_back(qtbot: Any, ai_window: Any, models: Path) -> None:
    from PySide6.QtWidgets import QDockWidget

    window = ai_window(models)
    window.show()
    qtbot.waitExposed(window)
    visible = [d for d in window.findChildren(QDockWidget) if d.isVisible()]
    assert visible
    window.action_map["hide_panels"].trigger()
    assert not any(d.isVisible() for d in window.findChildren(QDockWidget))
    assert window.canvas.isVisible()
    window.action_map["hide_panels"].trigger()
    assert all(d.isVisible() for d in visible)
    window.action_map["full_screen"].trigger()
    assert window.isFullScreen()
    window.action_map["full_screen"].trigger()
    assert not window.isFullScreen()


def test_batch_results_reopened_from_history_show_their_overlays(qtbot: Any, ai_window: Any,
                                                                 models: Path, tmp_path: Path) -> None:
    """Issue 16: batch results reopened from the history showed no mask or heatmap."""
    _write(tmp_path / "h", "img", "FFF", "1.2.3.100", n=3)
    window = ai_window(models)
    _open(qtbot, window, tmp_path / "h")
    ai = window.ai
    with qtbot.waitSignal(ai.controller.sig_batch_finished, timeout=30000):
        ai.analyse_shown()
    hist = ai.history
    ai.history_dock.raise_()
    qtbot.waitUntil(lambda: hist.table.rowCount() >= 9, timeout=5000)
    hist.search.setText("pneumonia")
    hist.refresh()
    row_file = hist.table.item(0, 1).text()
    target = next(r for r in window.library.records if r.path.endswith(row_file))
    if window.images.current is target:  # show another image first
        other = next(r for r in window.library.records if r is not target)
        with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
            window.images.show(other)
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        hist.reopen(0)
    assert window.images.current is target
    assert ai.overlays.heatmap is not None and window.canvas.heatmap_layer.item.isVisible()
    assert ai.overlays.mask_data is not None and window.canvas.mask_layer.item.isVisible()
