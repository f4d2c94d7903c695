"""Main window: open, browse, thumbnails, drag-and-drop, load report, shortcuts, settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from tests import dicom_factory
from tests.ui.helpers import open_and_wait


def test_open_folder_browse_and_display(qtbot: Any, make_window: Any, small_study: Path) -> None:
    window = make_window()
    open_and_wait(qtbot, window, [str(small_study)])
    assert window.browser.counts() == (2, 2, 3)  # patients, studies, series
    top = window.browser.topLevelItem(0)
    assert top.text(5) in {"3", "2"} and top.child(0).childCount() >= 1
    assert len(window.library.records) == 5
    rg = window.canvas.radiograph
    assert rg is not None and window.canvas.image_item.image is not None
    shown = window.images.current
    assert (rg.rows, rg.cols) == (shown.rows, shown.cols)
    # the panel shows the window the canvas uses
    win = window.view_state.window
    assert win is not None and window.window_panel.center.value() == round(win.center, 1)
    # non-image files are reported, not shown, and nothing crashed
    report = "\n".join(" ".join(r) for r in window.load_report.rows())
    assert "report.dcm" in report


def test_thumbnails_lazy_then_cached(qtbot: Any, make_window: Any, small_study: Path,
                                     tmp_path: Path) -> None:
    window = make_window()
    open_and_wait(qtbot, window, [str(small_study)])
    grid = window.grid
    n = grid.thumb_model.rowCount()
    assert n >= 2
    qtbot.waitUntil(lambda: len(grid.thumb_model.icons) == n, timeout=10000)
    cached = list((tmp_path / "thumbs").rglob("*.png"))
    assert len(cached) >= n
    icon = grid.thumb_model.data(grid.thumb_model.index(0), Qt.ItemDataRole.DecorationRole)
    assert not icon.pixmap(32, 32).toImage().isNull()
    # selecting a thumbnail displays that image
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000) as blocker:
        grid.select_row(1)
    assert blocker.args[0] == grid.thumb_model.records[1]


def test_visible_rows_requested_first(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    rng = np.random.default_rng(1)
    for i in range(40):
        dicom_factory.write_dicom(folder / f"im{i:02d}.dcm", rng.integers(0, 255, (8, 8), dtype=np.uint8),
                                  StudyInstanceUID="1.2.9", SeriesInstanceUID="1.2.9.1",
                                  InstanceNumber=i + 1)
    window = make_window()
    window.docks["thumbnails"].setMinimumHeight(10)
    open_and_wait(qtbot, window, [str(folder)])
    grid = window.grid
    visible = grid.visible_rows()
    assert 0 < len(visible) < 40
    # the first requests went to visible rows
    qtbot.waitUntil(lambda: all(grid.thumb_model.records[r].key in grid.thumb_model.icons
                                for r in visible), timeout=10000)
    grid.scrollToBottom()
    QApplication.processEvents()
    bottom = grid.visible_rows()
    assert bottom and bottom[-1] == 39
    qtbot.waitUntil(lambda: grid.thumb_model.records[39].key in grid.thumb_model.icons,
                    timeout=10000)
    qtbot.waitUntil(lambda: grid.pending() == 0, timeout=20000)


def test_drag_and_drop_opens_paths(qtbot: Any, make_window: Any, small_study: Path) -> None:
    window = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(small_study / "a")), QUrl.fromLocalFile(str(small_study / "b"))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.library.sig_scan_finished, timeout=10000):
        window.dropEvent(event)
    assert event.isAccepted()
    assert len(window.library.records) == 5
    assert window.settings.recent_paths()[:2] == [str(small_study / "b"), str(small_study / "a")]


def test_broken_files_reported_never_crash(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    good = dicom_factory.write_dicom(folder / "good.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    dicom_factory.write_truncated(good, folder / "truncated.dcm", keep=400)
    dicom_factory.write_rtstruct(folder / "rt.dcm")
    (folder / "garbage.dcm").write_bytes(b"DICM" * 50)
    window = make_window()
    with qtbot.waitSignal(window.library.sig_scan_finished, timeout=10000):
        window.open_paths([str(folder)])
    rows = window.load_report.rows()
    names = {Path(r[0]).name for r in rows}
    assert {"rt.dcm", "garbage.dcm"} <= names
    assert all(r[1] for r in rows)  # every problem has a reason
    assert window.docks["report"].isVisible()
    assert window.docks["report"].windowTitle().startswith("Load Report (")
    qtbot.wait(20)
    # it opens as a strip at the bottom, leaving the image most of the height
    assert window.docks["report"].height() <= max(240, window.height() // 4)


def test_keyboard_shortcuts_drive_view(qtbot: Any, make_window: Any, small_study: Path) -> None:
    window = make_window()
    open_and_wait(qtbot, window, [str(small_study)])
    window.activateWindow()
    window.canvas.setFocus()
    state = window.view_state
    qtbot.keyClick(window.canvas, Qt.Key.Key_R)
    assert state.orientation.quarter_turns == 1
    qtbot.keyClick(window.canvas, Qt.Key.Key_H)
    qtbot.keyClick(window.canvas, Qt.Key.Key_V)
    assert state.orientation.flip_h and state.orientation.flip_v
    qtbot.keyClick(window.canvas, Qt.Key.Key_I)
    assert state.invert
    qtbot.keyClick(window.canvas, Qt.Key.Key_Home)
    assert state.orientation.quarter_turns == 0 and not state.invert
    qtbot.keyClick(window.canvas, Qt.Key.Key_O)
    assert not window.canvas.overlay_label.isVisible()
    first = window.images.current
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000) as blocker:
        qtbot.keyClick(window.canvas, Qt.Key.Key_PageDown)
    assert blocker.args[0] != first
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000) as blocker:
        qtbot.keyClick(window.canvas, Qt.Key.Key_PageUp)
    assert blocker.args[0] == first


def test_window_panel_fields_presets_and_histogram(qtbot: Any, make_window: Any,
                                                   tmp_path: Path) -> None:
    path = dicom_factory.write_dicom(
        tmp_path / "w" / "win.dcm", np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (40, 1)),
        bits_stored=12, WindowCenter=[1000, 2000], WindowWidth=[500, 3000],
        WindowCenterWidthExplanation=["NARROW", "WIDE"],
    )
    window = make_window()
    open_and_wait(qtbot, window, [str(path)])
    panel = window.window_panel
    labels = [panel.presets.itemText(i) for i in range(panel.presets.count())]
    assert labels[0].startswith("NARROW") and labels[1].startswith("WIDE")
    assert any("Auto" in label for label in labels)
    assert window.view_state.window.center == 1000.0
    panel.presets.setCurrentIndex(1)
    panel.presets.activated.emit(1)
    assert (window.view_state.window.center, window.view_state.window.width) == (2000.0, 3000.0)
    assert panel.region.getRegion() == (500.0, 3500.0)
    panel.center.setValue(1234.0)
    panel.center.editingFinished.emit()
    assert window.view_state.window.center == 1234.0
    levels = window.canvas.image_item.levels
    assert levels[0] < 1234.0 < levels[1]
    # keys 1-9 pick the presets in the list's order, wherever the focus is in the window
    window.activateWindow()
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_2)
    assert (window.view_state.window.center, window.view_state.window.width) == (2000.0, 3000.0)
    assert panel.presets.currentIndex() == 1
    qtbot.keyClick(window.canvas, Qt.Key.Key_1)
    assert window.view_state.window.center == 1000.0
    assert not panel.choose_preset(panel.presets.count())  # no such entry: nothing changes
    assert window.view_state.window.center == 1000.0


def test_settings_persist_between_windows(qtbot: Any, make_window: Any, small_study: Path) -> None:
    from viewer.state.view_state import WindowPreset

    window = make_window()
    open_and_wait(qtbot, window, [str(small_study)])
    window.window_panel.add_user_preset(WindowPreset("Bone", 1500.0, 2500.0))
    window.docks["header"].hide()
    window.close()
    again = make_window()
    assert again.settings.recent_paths()[0] == str(small_study)
    assert [a.text() for a in again.recent_menu.actions()][0] == str(small_study)
    assert [p.name for p in again.window_panel.user_presets] == ["Bone"]
    assert not again.docks["header"].isVisible()  # dock layout restored


def test_default_window_size_fits_the_screen(qtbot: Any) -> None:
    from PySide6.QtGui import QGuiApplication

    from viewer.ui.main_window import MainWindow

    avail = QGuiApplication.primaryScreen().availableGeometry()
    size = MainWindow.default_size()
    assert 0 < size.width() <= min(1400, avail.width()) and 0 < size.height() <= min(900, avail.height())


def test_header_dock_search(qtbot: Any, make_window: Any, small_study: Path) -> None:
    window = make_window()
    dock = window.docks["header"]
    dock.hide()
    dock.toggleViewAction().trigger()  # View > DICOM Header: shown and in front of its tabs
    assert dock.isVisible() and not dock.visibleRegion().isEmpty()
    with qtbot.waitSignal(window.images.sig_header_ready, timeout=10000):
        open_and_wait(qtbot, window, [str(small_study)])
    view = window.header_view
    total = view.visible_rows()
    assert total > 10
    view.search.setText("PatientID")
    assert 1 <= view.visible_rows() < total
    view.search.setText("(0028,0010)")
    assert view.visible_rows() == 1


def test_pixel_readout_in_status_bar(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    path = dicom_factory.write_dicom(
        tmp_path / "p" / "px.dcm", np.full((30, 40), 100, dtype=np.uint16), bits_stored=12,
        RescaleSlope=2, RescaleIntercept=-50, PixelSpacing=[0.5, 0.5],
    )
    window = make_window()
    open_and_wait(qtbot, window, [str(path)])
    canvas = window.canvas
    scene = canvas.image_item.mapToScene(QPointF(10.5, 20.5))
    view_pos = canvas.view.mapFromScene(scene)
    canvas.view.scene().sigMouseMoved.emit(canvas.view.mapToScene(QPoint(view_pos.x(), view_pos.y())))
    text = window.status.pixel_label.text()
    assert "stored 100" in text and "modality 150" in text
    assert "(PixelSpacing)" in text and "mm" in text


def test_scan_cancel_keeps_window_usable(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    folder = tmp_path / "big"
    data = dicom_factory.write_dicom(folder / "f0000.dcm", np.zeros((4, 4), dtype=np.uint8)).read_bytes()
    for i in range(1, 500):  # below the process-pool threshold: keeps the test fast
        (folder / f"f{i:04d}.dcm").write_bytes(data)
    window = make_window()
    with qtbot.waitSignal(window.library.sig_scan_failed, timeout=20000) as blocker:
        window.open_paths([str(folder)])
        assert window.status.cancel_button.isEnabled()
        window.status.cancel_button.click()
    assert blocker.args == ["Scan cancelled"]
    assert not window.library.busy and not window.status.cancel_button.isEnabled()
    assert window.library.records == []


def test_recent_paths_written_when_opened(qtbot: Any, make_window: Any, small_study: Path,
                                          settings_path: Path) -> None:
    """A crash after opening loses nothing: the INI file on disk has the folder already."""
    window = make_window()
    open_and_wait(qtbot, window, [str(small_study / "a")])
    window.settings.wait_written()
    text = settings_path.read_text(encoding="utf-8")
    assert "recent" in text and (small_study / "a").name in text
    from PySide6.QtCore import QSettings

    from viewer.ui.settings import AppSettings

    fresh = AppSettings(QSettings(str(settings_path), QSettings.Format.IniFormat))
    assert fresh.recent_paths()[0] == str(small_study / "a")


SAME_SERIES = {"StudyInstanceUID": "1.2.3.9", "SeriesInstanceUID": "1.2.3.9.1"}


def _damaged_j2k(path: Path) -> Path:
    """A JPEG 2000 file whose header scans fine but whose codestream is garbage."""
    import pydicom
    from pydicom import uid
    from pydicom.encaps import encapsulate, generate_frames

    px = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 5) % 4096
    dicom_factory.write_dicom(path, px, bits_stored=12, InstanceNumber=2, **SAME_SERIES)
    ds = pydicom.dcmread(path)
    ds.compress(uid.JPEG2000Lossless, px)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    frame[3:] = b"\x55" * (len(frame) - 3)
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(path)
    return path


def test_report_counts_scan_problems_and_later_decode_failures(
        qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    dicom_factory.write_dicom(folder / "a_good.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8),
                              InstanceNumber=1, **SAME_SERIES)
    _damaged_j2k(folder / "b_bad.dcm")
    dicom_factory.write_rtstruct(folder / "rt.dcm")
    window = make_window()
    with qtbot.waitSignal(window.library.sig_scan_finished, timeout=20000):
        window.open_paths([str(folder)])
    status = window.status.pixel_label.text()
    assert "1 problem found by the scan" in status, status
    qtbot.waitUntil(lambda: window.load_report.count() == 2, timeout=20000)
    rows = {Path(r[0]).name: r for r in window.load_report.rows()}
    assert rows["rt.dcm"][4] == "scan"
    bad = rows["b_bad.dcm"]
    assert bad[4] == "thumbnail" and "failed" in bad[1]  # the good image is displayed first
    assert bad[2] == "1.2.840.10008.1.2.4.90" and bad[3]  # transfer syntax and advice
    summary = window.load_report.summary.text()
    assert "2 files with problems" in summary and "1 found by the scan" in summary
    assert "1 listed image failed to decode" in summary
    # displaying the same broken image adds no second row
    bad_record = next(r for r in window.library.records if r.path.endswith("b_bad.dcm"))
    with qtbot.waitSignal(window.images.sig_image_failed, timeout=10000):
        window.images.show(bad_record)
    assert window.load_report.count() == 2
    assert window.docks["report"].windowTitle() == "Load Report (2)"


def test_multiframe_navigation(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    """Frames step with the shortcuts and the status-bar box; each frame is decoded on its own
    (the displayed pixels are that frame's)."""
    frames = np.stack([np.full((24, 32), 100 * (i + 1), np.uint16) for i in range(4)])
    frames[:, 0, 0] = 4000  # same range in every frame
    dicom_factory.write_dicom(tmp_path / "mf" / "cine.dcm", frames, bits_stored=12)
    window = make_window()
    open_and_wait(qtbot, window, [str(tmp_path / "mf")])
    status, canvas = window.status, window.canvas
    assert canvas.radiograph.frame_count == 4 and canvas.radiograph.frame_index == 0
    assert status.frame_text() == "frame 1 / 4" and status.frame_spin.isEnabled()
    canvas.zoom(2.0)
    zoomed = canvas.viewbox.viewRange()
    window.activateWindow()
    canvas.setFocus()
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000):
        qtbot.keyClick(canvas, Qt.Key.Key_Period)
    rg = canvas.radiograph
    assert rg.frame_index == 1 and int(rg.pixels[5, 5]) == 200
    assert status.frame_text() == "frame 2 / 4"
    assert "frame 2/4" in canvas.overlay_label.text()
    assert canvas.viewbox.viewRange() == zoomed  # another frame keeps the zoom
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000):
        qtbot.keyClick(canvas, Qt.Key.Key_Down, Qt.KeyboardModifier.ControlModifier)
    assert canvas.radiograph.frame_index == 2
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000):
        status.frame_spin.setValue(4)  # as if typed into the box
    assert int(canvas.radiograph.pixels[5, 5]) == 400 and status.frame_text() == "frame 4 / 4"
    window.step_frame(1)  # past the last frame: nothing to load
    assert window.images.current_pending is None
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000):
        qtbot.keyClick(canvas, Qt.Key.Key_Comma)
    assert canvas.radiograph.frame_index == 2


def test_single_frame_disables_the_frame_box(qtbot: Any, make_window: Any, small_study: Path) -> None:
    window = make_window()
    open_and_wait(qtbot, window, [str(small_study / "a")])
    assert not window.status.frame_spin.isEnabled()
    assert window.status.frame_text() == "frame 1 / 1"
    window.step_frame(1)
    assert window.images.current_pending is None


def test_help_menu_opens_the_support_log_folder(qtbot: Any, make_window: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtCore import QObject, QUrl, Slot
    from PySide6.QtGui import QDesktopServices

    class _Catch(QObject):
        urls: list[QUrl] = []

        @Slot(QUrl)
        def open(self, url: QUrl) -> None:
            self.urls.append(url)

    folder = tmp_path / "support-logs"
    monkeypatch.setenv("RADVIEW_LOG_DIR", str(folder))
    catcher = _Catch()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    try:
        window = make_window()
        titles = [a.text() for a in window.menuBar().actions()]
        assert titles[-1] == "&Help"
        action = window.action_map["open_log_folder"]
        assert action in window.help_menu.actions()
        action.trigger()
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [u.toLocalFile() for u in catcher.urls] == [str(folder)]
    assert folder.is_dir()
    assert str(folder) in window.statusBar().currentMessage()


def test_preset_box_names_the_window_in_use(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    """Issue 16: a file window that does not fit the data was named as applied while the auto
    window was in use; a drag kept naming a preset; the label repeated the numbers."""
    path = dicom_factory.write_dicom(
        tmp_path / "w" / "bad-window.dcm", np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (40, 1)),
        bits_stored=12, WindowCenter=[90000], WindowWidth=[10], WindowCenterWidthExplanation=["AWAY"])
    window = make_window()
    open_and_wait(qtbot, window, [str(path)])
    panel = window.window_panel
    assert "does not fit the data" in panel.presets.itemText(0)
    assert "[auto]" in panel.presets.currentText()  # the window in use is the automatic one
    assert all(" C " not in panel.presets.itemText(i) for i in range(panel.presets.count()))
    panel.center.setValue(1500.0)
    panel.center.editingFinished.emit()  # a manual window: no preset is named any more
    assert panel.presets.currentIndex() == -1


def test_missing_xcb_libraries_are_named_before_qt_aborts(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16: on a plain Debian/Ubuntu machine the window did not appear until three xcb
    libraries were installed; the command now says which, instead of Qt's abort."""
    import ctypes.util
    import sys

    from viewer import app

    if not sys.platform.startswith("linux"):
        pytest.skip("xcb is the Linux platform")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None if name == "xcb-cursor" else "x")
    assert app.missing_xcb_libraries() == ["libxcb-cursor0"]
    assert app.main([]) == 2
    err = capsys.readouterr().err
    assert "sudo apt-get install libxcb-cursor0" in err
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert app.missing_xcb_libraries() == []


def test_first_window_help_about_and_shortcuts(qtbot: Any, make_window: Any, small_study: Path) -> None:
    """Issue 16: a first window that says what to do; Help > About (version, licences,
    intended use) and the keyboard shortcuts, from the actions' own table."""
    window = make_window()
    qtbot.waitUntil(lambda: window.canvas.message_label.isVisible(), timeout=5000)
    assert "Open a folder or drop files here" in window.canvas.message_label.text()
    titles = [a.text() for a in window.help_menu.actions()]
    assert titles == ["&Keyboard Shortcuts", "Open &Log Folder", "&About radview"]
    about = window.about_text()
    assert "0.1.0" in about and "not for diagnosis" in about.lower() and "LGPL-3.0" in about
    keys = window.shortcuts_text()
    assert "Ctrl+O" in keys and "Rotate 90" in keys and "Window Preset 1" in keys
    from PySide6.QtWidgets import QMessageBox

    window.action_map["about"].trigger()
    box = window.findChild(QMessageBox, "aboutBox")
    assert box is not None and "radview 0.1.0" in box.text()
    box.close()
    open_and_wait(qtbot, window, [str(small_study)])
    assert not window.canvas.message_label.isVisible()  # the image replaced the hint
