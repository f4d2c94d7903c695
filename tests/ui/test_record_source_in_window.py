"""``!`` in a folder's, a file's or a zip member's name, in the window: analysing, exporting and
reopening from the history (in a new window, so the file is opened from the stored source) name
and show the right file. Real widgets, tiny generated models, real DICOM files and zip."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import dicom_factory
from tests.inference.tiny_models import make_model_set


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_set(tmp_path_factory.mktemp("bang_models") / "chest")


def _pixels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(600, 3000, (96, 112)).astype(np.uint16)
    img[19:-19, 14:52] = 300
    img[19:-19, 60:-14] = 350
    return img


def _write(path: Path, seed: int) -> None:
    dicom_factory.write_dicom(path, _pixels(seed), bits_stored=12, BodyPartExamined="CHEST",
                              ViewPosition="PA", PatientID="BANG", InstanceNumber=seed,
                              StudyInstanceUID="1.2.826.0.1.3680043.8.498.77",
                              SeriesInstanceUID="1.2.826.0.1.3680043.8.498.77.1")


def _show(qtbot: Any, window: Any, record: Any) -> None:
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.images.show(record)


def _reopen(qtbot: Any, window: Any, name: str) -> Any:
    """Reopen the classifier's history row of the file ``name`` (from the History dock)."""
    hist = window.ai.history
    window.ai.history_dock.raise_()
    qtbot.waitUntil(lambda: hist.table.rowCount() > 0, timeout=10000)
    hist.search.setText(name)
    hist.refresh()
    row = next(i for i, e in enumerate(hist.entries) if e.model_id == "pneumonia")
    assert hist.entries[row].source.endswith(name)
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        hist.reopen(row)
    return window.images.current


def test_bang_names_in_the_window(qtbot: Any, ai_window: Any, models: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data" / "st!dy"
    _write(folder / "a!1.dcm", 1)
    _write(tmp_path / "m.dcm", 3)
    archive = folder / "arch!ive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(tmp_path / "m.dcm", "in!ner/c!3.dcm")
    (tmp_path / "m.dcm").unlink()

    window = ai_window(models)
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.open_paths([str(folder)])
    records = {Path(r.member or r.path).name: r for r in window.library.records}
    assert set(records) == {"a!1.dcm", "c!3.dcm"}
    plain, inner = records["a!1.dcm"], records["c!3.dcm"]
    ai = window.ai
    for rec in (plain, inner):
        _show(qtbot, window, rec)
        with qtbot.waitSignal(ai.controller.sig_result_ready, timeout=20000) as blocker:
            ai.analyse_current(False)
        assert blocker.args[1].source == rec.source
        out = ai.export_to("results_image", tmp_path / "out" / f"{rec.instance_number}.csv")
        assert out is not None, ai.notifications
        with out.open(newline="") as fh:
            assert {row["file"] for row in csv.DictReader(fh)} == {rec.source}
    window.close()

    # A new window: the files are not open, so the history's source is opened from disk.
    again = ai_window(models)
    assert not again.library.records
    shown = _reopen(qtbot, again, "c!3.dcm")
    assert (shown.path, shown.member) == (str(archive), "in!ner/c!3.dcm")
    assert again.canvas.heatmap_layer.item.isVisible()  # the stored overlays came with it
    third = ai_window(models)
    shown = _reopen(qtbot, third, "a!1.dcm")
    assert (shown.path, shown.member) == (str(folder / "a!1.dcm"), None)
