"""Progressive display (issue 16: a cold click on a JPEG 2000 film must show something in well
under 150 ms): a reduced-resolution stand-in first, then the full image in its place.

Real widgets, real decode processes (a preview decoded on a thread finishes together with the
full decode, which holds the GIL), real JPEG 2000 films from ``shared/data/dicom``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from viewer.state.provisional import preview_reduce_to, provisional_image

FILMS = ("RG1_J2KI.dcm", "RG2_J2KI.dcm", "966_fixed.dcm", "RG3_J2KI.dcm")


def _film(shared_dicom: Path, name: str) -> Path:
    path = shared_dicom / name
    if not path.exists():
        pytest.skip(f"{name} not in the shared data")
    return path


def _record(path: Path) -> Any:
    from viewer.dicom.scan import scan_files

    (rec,) = scan_files([str(path)])
    return rec


def _full(record: Any) -> Any:
    from viewer.services.library import load_image

    return load_image(record, 0)


# -- the stand-in itself (no Qt) ---------------------------------------------------------------
def test_reduce_to_keeps_half_the_pixels_the_viewport_shows() -> None:
    # 1955 rows at fit in a 700-px-high view: 700 px shown, 350 kept: two halvings (489).
    assert preview_reduce_to(1955, 1841, 900, 700) == int(1955 // 6)
    # a view as large as the image: nothing worth reducing; half as large: one halving
    assert preview_reduce_to(1955, 1841, 2000, 2000) is None
    assert preview_reduce_to(1955, 1841, 1000, 1000) == int(1955 // 3)
    # a tiny view: at most three halvings, whatever the side lengths; no view at all: no preview
    assert preview_reduce_to(1952, 1840, 120, 100) == 1952 // 12
    assert preview_reduce_to(1955, 1841, 120, 100) == 1955 // 12
    assert preview_reduce_to(1955, 1841, 0, 0) is None


def test_the_reduce_to_chosen_decodes_reduced_for_any_side_length(shared_dicom: Path) -> None:
    """RG1_J2KI (1841 columns, which 4 and 8 do not divide) decodes two and three J2K levels
    reduced (viewer.dicom.reduced starts Pillow from sides rounded up to a multiple of 2^k:
    before, Pillow's rounding made these fall back to a full decode)."""
    from viewer.services.library import load_image

    record = _record(_film(shared_dicom, "RG1_J2KI.dcm"))
    assert load_image(record, 0, reduce_to=1955 // 6).rows == 489  # k = 2: ceil(1955 / 4)
    assert load_image(record, 0, reduce_to=1955 // 12).rows == 245  # k = 3
    chosen = preview_reduce_to(record.rows, record.cols, 900, 700)
    assert chosen is not None and load_image(record, 0, reduce_to=chosen).rows == 489


def test_provisional_image_has_the_full_geometry(shared_dicom: Path) -> None:
    from viewer.services.library import load_image

    record = _record(_film(shared_dicom, "RG2_J2KI.dcm"))
    small = load_image(record, 0, reduce_to=preview_reduce_to(record.rows, record.cols, 900, 700))
    full = _full(record)
    assert small.rows < full.rows
    stand_in = provisional_image(small, record.rows, record.cols)
    assert stand_in is not None
    rg = stand_in.radiograph
    assert rg.pixels.shape == full.pixels.shape and rg.pixels.dtype == full.pixels.dtype
    assert rg.spacing_mm == full.spacing_mm and rg.photometric == full.photometric
    assert stand_in.preview is not None and stand_in.preview.shape == small.pixels.shape
    # the same picture, interpolated: close on average, not the decoded values
    diff = np.abs(rg.pixels.astype(np.int32) - full.pixels.astype(np.int32))
    assert float(diff.mean()) < 0.02 * float(np.ptp(full.pixels)) and diff.max() > 0
    # a decode that could not be reduced is no stand-in
    assert provisional_image(full, record.rows, record.cols) is None


# -- in the window -----------------------------------------------------------------------------
@pytest.fixture
def process_window(qtbot: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A main window with 2 decode processes (started and warm before it returns)."""
    from PySide6.QtCore import QSettings

    from viewer.app import build_window
    from viewer.ui.settings import AppSettings

    windows: list[Any] = []

    def make(models: Path | None = None) -> Any:
        settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
        window = build_window(settings, tmp_path / "thumbs", io_workers=2, thumb_workers=1,
                              decode_processes=2, ai=False)
        if models is not None:
            from viewer.inference.registry import ModelRegistry
            from viewer.ui.ai_features import AiFeatures

            window.ai = AiFeatures(window, ModelRegistry([models]), tmp_path / "hist" / "h.sqlite")
        qtbot.addWidget(window)
        window.resize(1100, 750)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        pool = window.images.load_fn.__self__
        for future in pool.warm_up():  # spawned and imported: the decodes race fairly
            future.result(timeout=120)
        return window

    yield make
    for window in windows:
        window.close()
        window.shutdown()


def _open(qtbot: Any, window: Any, paths: list[Path]) -> list[Any]:
    with qtbot.waitSignal(window.sig_image_displayed, timeout=60000):
        window.open_paths([str(p) for p in paths])
    return list(window.library.records)


def _other(window: Any, records: list[Any]) -> Any:
    """A record that is not the one on screen."""
    return next(r for r in records if r is not window.viewports.active.record)


def _wait_idle(qtbot: Any, window: Any) -> None:
    """Until no decode is queued or running and every outcome was delivered (after the
    neighbours' prefetch, which starts 250 ms after an image is shown)."""
    from viewer.ui.main_window import PREFETCH_DELAY_MS

    bridge = window.bridges[0]
    qtbot.wait(PREFETCH_DELAY_MS + 100)
    qtbot.waitUntil(lambda: bridge.pending() == 0, timeout=60000)
    bridge.drain()
    qtbot.wait(50)


def _show_cold(qtbot: Any, window: Any, record: Any,
               on_preview: Callable[[], None] | None = None) -> list[str]:
    """Show ``record`` cold (its decode dropped from the cache, as if never prefetched);
    returns the events in order: "preview", "full"."""
    assert record is not window.viewports.active.record
    window.images.cache.discard(record.key)
    events: list[str] = []

    def preview(rec: Any) -> None:
        if rec is record:
            events.append("preview")
            if on_preview is not None:
                on_preview()

    def full(rec: Any, _prepared: Any) -> None:
        if rec is record:
            events.append("full")

    window.sig_preview_displayed.connect(preview)
    window.sig_image_displayed.connect(full)
    try:
        with qtbot.waitSignal(window.sig_image_displayed, timeout=60000,
                              check_params_cb=lambda rec, _p: rec is record):
            window.images.show(record)
    finally:
        window.sig_preview_displayed.disconnect(preview)
        window.sig_image_displayed.disconnect(full)
    return events


def test_preview_first_then_the_full_image_in_the_same_place(qtbot: Any, process_window: Any,
                                                             shared_dicom: Path) -> None:
    from viewer.ui.viewports import canvas_image_rect

    window = process_window()
    records = _open(qtbot, window, [_film(shared_dicom, "RG2_J2KI.dcm"),
                                    _film(shared_dicom, "966_fixed.dcm")])
    _wait_idle(qtbot, window)
    film = _other(window, records)
    canvas = window.canvas
    seen: dict[str, Any] = {}

    def at_preview() -> None:
        seen["rect"] = canvas_image_rect(canvas)
        seen["provisional"] = canvas.provisional
        seen["fit_layer"] = None if canvas.prepared.preview is None else canvas.prepared.preview.shape
        seen["info"] = canvas.info_text()
        # the user zooms and pans while the full image loads
        canvas.zoom(1.6)
        canvas.viewbox.translateBy(x=120.0, y=-80.0)
        seen["range"] = canvas.viewbox.viewRange()

    events = _show_cold(qtbot, window, film, at_preview)
    assert events == ["preview", "full"]
    assert seen["provisional"] and "loading full resolution" in seen["info"]
    assert seen["fit_layer"] is not None and seen["fit_layer"][0] < film.rows  # a reduced decode
    # the full image took its place: same rect in full-image pixels, the user's zoom and pan kept
    assert not canvas.provisional and "loading full resolution" not in canvas.info_text()
    assert canvas_image_rect(canvas) == seen["rect"]
    assert seen["rect"].width() == film.cols and seen["rect"].height() == film.rows
    np.testing.assert_allclose(canvas.viewbox.viewRange(), seen["range"], atol=1e-6)
    np.testing.assert_array_equal(canvas.radiograph.pixels, _full(film).pixels)


def test_window_untouched_becomes_the_full_images_and_a_touched_one_stays(
        qtbot: Any, process_window: Any, shared_dicom: Path) -> None:
    from viewer.state.display_plan import voi_to_window
    from viewer.state.view_state import WindowLevel

    window = process_window()
    records = _open(qtbot, window, [_film(shared_dicom, n) for n in FILMS])
    _wait_idle(qtbot, window)
    cold = [r for r in records if r is not window.viewports.active.record]
    # untouched: the full image's default window (the file's VOI, else its auto window)
    assert _show_cold(qtbot, window, cold[0]) == ["preview", "full"]
    assert window.view_state.window == voi_to_window(window.canvas.prepared.voi)
    # touched during the preview: the user's window stays, in the panel and on the canvas
    mine = WindowLevel(1234.0, 567.0, "Manual", "user")
    events = _show_cold(qtbot, window, cold[1], lambda: window.view_state.set_window(mine))
    assert events == ["preview", "full"]
    assert window.view_state.window == mine
    assert window.canvas.plan is not None and not window.canvas.plan.fixed
    lo, hi = sorted(window.canvas.image_item.getLevels())
    assert hi - lo == pytest.approx(567.0, rel=0.01)


def test_readout_measurements_and_analysis_wait_for_the_full_image(
        qtbot: Any, process_window: Any, shared_dicom: Path, tmp_path: Path) -> None:
    from PySide6.QtCore import QPointF

    from tests.inference.tiny_models import make_model_set
    from viewer.core.measure import Measurement, resolve_scale, roi_stats
    from viewer.ui.status_bar import probe_text

    window = process_window(make_model_set(tmp_path / "models" / "chest"))
    records = _open(qtbot, window, [_film(shared_dicom, "RG2_J2KI.dcm"),
                                    _film(shared_dicom, "966_fixed.dcm")])
    _wait_idle(qtbot, window)
    film = _other(window, records)
    canvas, ai = window.canvas, window.ai
    roi = Measurement("rect", ((300.0, 400.0), (700.0, 900.0)))
    seen: dict[str, Any] = {}

    def at_preview() -> None:
        seen["probe"] = canvas.probe_at(QPointF(500.5, 600.5))
        seen["layer"] = canvas.measurements.radiograph
        canvas.measurements.add(roi)  # refused: no image to measure on yet
        seen["values"] = dict(canvas.measurements.values)
        seen["ai_record"] = ai.current_record
        seen["analysed"] = ai.analyse_current(False)
        seen["panel"] = ai.panel.state_label.text()

    assert _show_cold(qtbot, window, film, at_preview) == ["preview", "full"]
    probe = seen["probe"]
    assert probe.pending and probe.stored == () and (probe.row, probe.col) == (600, 500)
    assert "full resolution still loading" in probe_text(probe)
    assert seen["layer"] is None and seen["values"] == {}
    assert seen["ai_record"] is None and seen["analysed"] == 0
    assert "Full resolution still loading" in seen["panel"]
    # the full image: values, measurements and the analysis input are the decoded pixels
    full = _full(film)
    probe = canvas.probe_at(QPointF(500.5, 600.5))
    assert not probe.pending and probe.stored == (float(full.pixels[600, 500]),)
    canvas.measurements.add(roi)
    stats = canvas.measurements.values[roi.ident].stats
    expected = roi_stats(full, "rect", *roi.points, resolve_scale(full.spacing_mm, full.spacing_kind))
    assert stats is not None and (stats.count, stats.mean, stats.sd) == (
        expected.count, expected.mean, expected.sd)
    assert ai.current_record is film
    np.testing.assert_array_equal(ai.current_prepared.radiograph.pixels, full.pixels)


def test_leaving_an_image_drops_its_late_preview_and_full_image(qtbot: Any, process_window: Any,
                                                                shared_dicom: Path) -> None:
    window = process_window()
    records = _open(qtbot, window, [_film(shared_dicom, n) for n in FILMS])
    _wait_idle(qtbot, window)
    a, b = [r for r in records if r is not window.viewports.active.record][:2]
    window.images.cache.clear()
    shown: list[tuple[str, Any]] = []
    window.sig_preview_displayed.connect(lambda rec: shown.append(("preview", rec)))
    window.sig_image_displayed.connect(lambda rec, _p: shown.append(("full", rec)))
    # 1. another click before the first one's preview came: neither of its images shows
    window.images.show(a)
    with qtbot.waitSignal(window.sig_image_displayed, timeout=60000,
                          check_params_cb=lambda rec, _p: rec is b):
        window.images.show(b)
    _wait_idle(qtbot, window)
    assert [what for what, rec in shown if rec is a] == []
    assert ("full", b) in shown and window.canvas.radiograph.rows == b.rows
    # 2. another click while the first one's preview is on screen: its full image never shows
    window.images.cache.clear()
    shown.clear()

    def leave() -> None:
        if ("preview", a) in shown and window.images.current is a:
            window.images.show(b)

    window.sig_preview_displayed.connect(lambda _rec: leave())
    with qtbot.waitSignal(window.sig_image_displayed, timeout=60000,
                          check_params_cb=lambda rec, _p: rec is b or rec is a):
        window.images.show(a)
    assert ("preview", a) in shown, f"no stand-in came before the full image: {shown}"
    if ("full", b) not in shown:
        qtbot.waitSignal(window.sig_image_displayed, timeout=60000,
                         check_params_cb=lambda rec, _p: rec is b).wait()
    _wait_idle(qtbot, window)
    assert ("full", a) not in shown
    assert window.canvas.radiograph.rows == b.rows and not window.canvas.provisional
    assert window.viewports.active.record is b


def _cleared_after(qtbot: Any, window: Any, act: Callable[[], None]) -> tuple[list[Any], Any]:
    """Run ``act`` and wait until the display is cleared for a failed decode; returns the
    stand-ins shown meanwhile and the clearing signal's arguments."""
    previews: list[Any] = []
    window.sig_preview_displayed.connect(previews.append)
    with qtbot.waitSignal(window.sig_image_cleared, timeout=60000,
                          check_params_cb=lambda _rec, why: "Cannot display" in why) as blocker:
        act()
    _wait_idle(qtbot, window)
    return previews, blocker.args


def _assert_cleared(window: Any) -> None:
    canvas = window.canvas
    assert canvas.radiograph is None and not canvas.provisional
    assert canvas.message_label.isVisible() and "Cannot display this image" in canvas.message_label.text()
    assert window.window_panel.prepared is None and window.viewports.active.record is None


def test_a_decode_stopped_after_the_preview_clears_the_display(
        qtbot: Any, process_window: Any, shared_dicom: Path) -> None:
    """The full decode of a 2128 x 2000 film runs past the pool's limit (here 0.3 s) and is
    stopped: the stand-in (when it came first, as it does unless the machine is very loaded)
    does not stay up as the image."""
    window = process_window()
    records = _open(qtbot, window, [_film(shared_dicom, "RG2_J2KI.dcm"),
                                    _film(shared_dicom, "966_fixed.dcm")])
    _wait_idle(qtbot, window)
    film = next(r for r in records if r.path.endswith("966_fixed.dcm"))
    if window.viewports.active.record is film:
        _show_cold(qtbot, window, _other(window, records))
        _wait_idle(qtbot, window)
    window.images.cache.discard(film.key)
    # 0.3 s: well under the full decode on any machine (~0.4 s quiet, more under load), well
    # over the reduced one (~20-50 ms since viewer.dicom.reduced decodes any side length).
    window.images.load_fn.__self__.task_timeout_s = 0.3
    previews, (record, why) = _cleared_after(qtbot, window, lambda: window.images.show(film))
    assert previews in ([film], []) and record is film and "did not finish" in why
    _assert_cleared(window)


def test_a_decode_failing_before_its_preview_arrives_shows_no_preview(
        qtbot: Any, process_window: Any, shared_dicom: Path, tmp_path: Path) -> None:
    """A damaged header ((0028,0004) Photometric Interpretation "MONOCHROME3"): pydicom's full
    decode refuses it at once, the reduced decode would read the codestream; its late stand-in
    must not appear over the failure message."""
    import pydicom

    folder = tmp_path / "damaged"
    folder.mkdir()
    ds = pydicom.dcmread(_film(shared_dicom, "RG2_J2KI.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME3"
    ds.save_as(folder / "damaged.dcm")
    window = process_window()
    previews, _args = _cleared_after(qtbot, window, lambda: window.open_paths([str(folder)]))
    assert previews == []
    _assert_cleared(window)


def test_no_preview_when_decodes_run_on_threads(qtbot: Any, make_window: Any,
                                                shared_dicom: Path) -> None:
    """Without decode processes the full decode holds the GIL and a preview would finish with
    it: none is made, the film shows once, at full resolution."""
    window = make_window()
    assert window.images.preview_fn is None
    previews: list[Any] = []
    window.sig_preview_displayed.connect(previews.append)
    _open(qtbot, window, [_film(shared_dicom, "RG2_J2KI.dcm")])
    assert previews == [] and not window.canvas.provisional and window.canvas.radiograph.rows == 2140


def test_a_stand_in_left_in_another_viewport_is_cleared_not_left_standing(
        qtbot: Any, process_window: Any, shared_dicom: Path) -> None:
    """1 x 2: a film's stand-in is up in the left viewport when the user makes the right one
    active and selects another film there; one load runs at a time, so the left one's full
    image will not come: it says so instead of keeping the stand-in."""
    from viewer.ui.progressive import INTERRUPTED_TEXT

    window = process_window()
    records = _open(qtbot, window, [_film(shared_dicom, n) for n in FILMS])
    _wait_idle(qtbot, window)
    grid = window.viewports
    grid.set_layout(1, 2)
    left, right = grid.viewports[0], grid.viewports[1]
    grid.set_active(left)
    a, b = [r for r in records if r is not left.record][:2]
    window.images.cache.clear()

    def move_on() -> None:
        if left.canvas.provisional and grid.active is left:
            grid.set_active(right)
            window.images.show(b)

    window.sig_preview_displayed.connect(lambda _rec: move_on())
    with qtbot.waitSignal(window.sig_image_displayed, timeout=60000,
                          check_params_cb=lambda rec, _p: rec is b or rec is a) as blocker:
        window.images.show(a)
    assert blocker.args[0] is b, "no stand-in came before the full image"
    _wait_idle(qtbot, window)
    assert right.record is b and not right.canvas.provisional
    assert left.record is None and left.canvas.radiograph is None and not left.canvas.provisional
    assert left.canvas.message_label.text() == INTERRUPTED_TEXT
