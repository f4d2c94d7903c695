"""Opening the other kinds of input through the window: single files, PNG/JPEG, a zip archive,
several folders at once; and Ctrl+left-drag window/level, zoom and fit."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from tests import dicom_factory
from tests.ui.helpers import open_and_wait


def test_png_and_jpeg_files_display(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    grey = np.tile(np.arange(0, 250, 5, dtype=np.uint8), (30, 1))
    colour = np.zeros((20, 24, 3), dtype=np.uint8)
    colour[..., 2] = 200  # BGR: red
    png, jpg = tmp_path / "grey.png", tmp_path / "colour.jpg"
    cv2.imwrite(str(png), grey)
    cv2.imwrite(str(jpg), colour)
    window = make_window()
    open_and_wait(qtbot, window, [str(png), str(jpg)])
    assert len(window.library.records) == 2
    shown = {window.images.current.display_name}
    with qtbot.waitSignal(window.sig_image_displayed, timeout=10000) as blocker:
        window.step_image(1)
    shown.add(blocker.args[0].display_name)
    assert shown == {"grey.png", "colour.jpg"}
    rg = blocker.args[1].radiograph
    if rg.is_colour:
        assert rg.pixels[..., 0].mean() > 150 and rg.pixels[..., 2].mean() < 60  # RGB order
    else:
        np.testing.assert_array_equal(rg.pixels, grey)


def test_zip_and_several_folders(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    one = dicom_factory.write_dicom(tmp_path / "src" / "one.dcm", np.eye(16, dtype=np.uint16) * 100,
                                    PatientID="Z1", StudyInstanceUID="1.2.77")
    archive = tmp_path / "in" / "study.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(one, "nested/one.dcm")
    other = tmp_path / "other"
    dicom_factory.write_dicom(other / "two.dcm", np.ones((8, 8), dtype=np.uint16),
                              PatientID="Z2", StudyInstanceUID="1.2.78")
    window = make_window()
    open_and_wait(qtbot, window, [str(archive.parent), str(other)])
    members = {(Path(r.path).name, r.member) for r in window.library.records}
    assert ("study.zip", "nested/one.dcm") in members and ("two.dcm", None) in members
    assert window.browser.counts()[0] == 2
    # nothing was extracted next to the archive
    assert sorted(p.name for p in archive.parent.iterdir()) == ["study.zip"]


def _mouse(widget: Any, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton,
           buttons: Qt.MouseButton, mods: Qt.KeyboardModifier) -> None:
    event = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons, mods)
    QApplication.sendEvent(widget, event)


def test_ctrl_left_drag_windows_and_zoom_fit(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    path = dicom_factory.write_dicom(tmp_path / "w.dcm",
                                     np.tile(np.arange(0, 4000, 50, dtype=np.uint16), (60, 1)),
                                     bits_stored=12, WindowCenter=2000, WindowWidth=1000)
    window = make_window()
    open_and_wait(qtbot, window, [str(path)])
    canvas = window.canvas
    before = window.view_state.window
    view_range = canvas.viewbox.viewRange()
    viewport = canvas.view.viewport()
    start = viewport.rect().center()
    ctrl, left = Qt.KeyboardModifier.ControlModifier, Qt.MouseButton.LeftButton
    _mouse(viewport, QEvent.Type.MouseButtonPress, start, left, left, ctrl)
    for step in range(1, 6):
        _mouse(viewport, QEvent.Type.MouseMove, start + QPoint(0, 10 * step), Qt.MouseButton.NoButton,
               left, ctrl)
    _mouse(viewport, QEvent.Type.MouseButtonRelease, start + QPoint(0, 50), left,
           Qt.MouseButton.NoButton, ctrl)
    qtbot.waitUntil(lambda: window.view_state.window != before, timeout=2000)
    after = window.view_state.window
    assert after.center > before.center and after.width == pytest.approx(before.width)
    assert canvas.viewbox.viewRange() == view_range  # a window drag does not pan
    window.action_map["zoom_in"].trigger()
    zoomed = canvas.viewbox.viewRange()
    assert zoomed[0][1] - zoomed[0][0] < view_range[0][1] - view_range[0][0]
    window.action_map["fit"].trigger()
    fitted = canvas.viewbox.viewRange()
    assert fitted[0][1] - fitted[0][0] == pytest.approx(view_range[0][1] - view_range[0][0], rel=0.05)


def test_dicomdir_opens_in_the_browser(qtbot: Any, make_window: Any, tmp_path: Path) -> None:
    """A DICOMDIR written by pydicom's FileSet: its patients, studies and images show in the
    browser, the thumbnails and on the canvas, and the media folder is left as it was."""
    import pydicom
    from pydicom.fileset import FileSet

    fs = FileSet()
    for i, (pid, study, series, number) in enumerate(
            [("DD1", "1.2.81", "1.2.81.1", 1), ("DD1", "1.2.81", "1.2.81.1", 2),
             ("DD2", "1.2.82", "1.2.82.1", 1)]):
        px = np.full((12, 16), 100 * (i + 1), dtype=np.uint16)
        px[0, 0] = 1000
        src = dicom_factory.write_dicom(
            tmp_path / "src" / f"{i}.dcm", px, PatientID=pid, PatientName=f"Dir^{pid}",
            StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=number,
            StudyID="1", StudyTime="101010")
        fs.add(pydicom.dcmread(src))
    fs.write(tmp_path / "media")
    media = tmp_path / "media"
    before = sorted(str(p.relative_to(media)) for p in media.rglob("*"))
    window = make_window()
    with qtbot.waitSignal(window.grid.sig_thumbnails_idle, timeout=20000):
        open_and_wait(qtbot, window, [str(media / "DICOMDIR")])
    assert len(window.library.records) == 3
    assert window.browser.counts() == (2, 2, 2)  # patients, studies, series
    assert window.load_report.count() == 0  # the DICOMDIR itself is not a problem
    grid = window.grid
    shown = {Path(r.path).name for r in grid.thumb_model.records}
    assert len(shown) in (1, 2) and all(name.startswith("IM") for name in shown)
    qtbot.waitUntil(lambda: len(grid.thumb_model.icons) == grid.thumb_model.rowCount(), timeout=10000)
    rg = window.canvas.radiograph
    assert rg is not None and rg.pixels.shape == (12, 16) and int(rg.pixels[5, 5]) in (100, 200, 300)
    assert sorted(str(p.relative_to(media)) for p in media.rglob("*")) == before
