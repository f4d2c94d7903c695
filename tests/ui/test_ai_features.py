"""The AI features in the window: results panel, gating display, overlays, badges, history,
model info and exports, with tiny generated models (tests/inference/tiny_models.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests import dicom_factory
from tests.inference.tiny_models import make_model_set
from viewer import RESEARCH_NOTICE
from viewer.core.overlay import mask_contour
from viewer.inference.registry import ModelRegistry
from viewer.services.analysis_types import OK, OUT_OF_SCOPE, AnalysisResult
from viewer.ui.model_info import ModelsDialog


def _chest_like(rows: int = 96, cols: int = 112, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(600, 3000, (rows, cols)).astype(np.uint16)
    img[rows // 5: -rows // 5, cols // 8: cols // 2 - 4] = 300  # dark "lungs"
    img[rows // 5: -rows // 5, cols // 2 + 4: -cols // 8] = 350
    return img


@pytest.fixture(scope="module")
def models_chest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_set(tmp_path_factory.mktemp("ai_models") / "chest")


@pytest.fixture(scope="module")
def models_knee(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_set(tmp_path_factory.mktemp("ai_models") / "knee", region="knee")


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    for i in range(3):
        dicom_factory.write_dicom(root / f"img{i}.dcm", _chest_like(seed=i), bits_stored=12,
                                  PatientName="Test^AI", PatientID="AI1", BodyPartExamined="CHEST",
                                  ViewPosition="PA", InstanceNumber=i + 1,
                                  StudyInstanceUID="1.2.826.0.1.3680043.8.498.1",
                                  SeriesInstanceUID="1.2.826.0.1.3680043.8.498.1.1")
    return root


def _open(qtbot: Any, window: Any, study: Path) -> None:
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.open_paths([str(study)])


def _analyse(qtbot: Any, window: Any, force: bool = False) -> AnalysisResult:
    with qtbot.waitSignal(window.ai.controller.sig_result_ready, timeout=20000) as blocker:
        window.ai.analyse_current(force)
    return blocker.args[1]


def test_panel_shows_bands_threshold_version_and_notice(qtbot: Any, ai_window: Any,
                                                         models_chest: Path, study: Path) -> None:
    window = ai_window(models_chest)
    _open(qtbot, window, study)
    result = _analyse(qtbot, window)
    ai = window.ai
    res = result.result("pneumonia")
    assert res is not None and res.status == OK
    tree = ai.panel.tree
    texts = [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]
    assert any("v0.0.1-test" in t for t in texts)  # version visible
    head = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount())
                if tree.topLevelItem(i).data(0, 256) == "pneumonia")
    band_cell = head.text(2)
    assert res.band is not None and band_cell  # confidence in words, never an alarm colour
    assert {"green": "high", "orange": "medium", "red": "low"}[res.band] in band_cell
    assert head.background(2).style() == Qt.BrushStyle.NoBrush
    # the colour is the call's, and the call is stated in words with its operating point
    from viewer.ui.results_panel import CALL_STYLE, call_of

    call = call_of(res)
    assert call in ("finding", "no finding")
    assert head.background(1).color() == CALL_STYLE[call]
    assert "50.0%" in head.toolTip(1)  # the operating point
    children_text = " ".join(head.child(i).text(0) for i in range(head.childCount()))
    assert ("finding" if call == "finding" else "no pneumonia") in children_text
    children = [head.child(i).text(0) + " " + head.child(i).text(1) for i in range(head.childCount())]
    assert any("threshold" in c and "0.500" in c for c in children)
    assert any("green >= 90%" in c for c in children)
    assert RESEARCH_NOTICE in ai.panel.notice.text() and ai.panel.notice.isVisible()
    assert "CPU" in ai.panel.provider_label.text()
    assert "chest" in ai.panel.gate_label.text() and "CHEST" in ai.panel.gate_label.text()
    # the badge of the analysed thumbnail: text with the label and %, and a band colour
    key = window.images.current.key
    badge = window.grid.thumb_model.badges[key]
    assert res.label in badge and "%" in badge
    assert window.grid.thumb_model.badge_colours[key] == res.band  # kept for the band filter
    assert window.grid.thumb_model.badge_calls[key] in ("finding", "no finding")  # the tint


def test_window_with_every_panel_fits_a_laptop_screen(qtbot: Any, ai_window: Any,
                                                       models_chest: Path) -> None:
    """The stacked side panels once needed a 1,204-px-tall window: more than a 1080p screen."""
    window = ai_window(models_chest)
    hint = window.minimumSizeHint()
    assert hint.height() <= 700 and hint.width() <= 1000, hint  # 1366x768 and 1024x768 screens
    window.resize(1366, 700)
    qtbot.wait(50)
    assert window.height() <= 700
    # the form-like panels scroll instead of growing the window; the header shares their tabs
    for name in ("window", "ai_results", "ai_overlays"):
        assert window.docks[name].widget().objectName() == f"scroll_{name}"
    assert window.docks["header"] in window.tabifiedDockWidgets(window.docks["ai_overlays"])
    # and the image keeps the largest share of the width
    assert window.canvas.width() > window.docks["ai_results"].width()


def test_dock_layout_of_the_ai_panels_survives_a_restart(qtbot: Any, ai_window: Any,
                                                          models_chest: Path) -> None:
    """Docks added by the AI features after the window restored its state are restored too,
    and the default tab arrangement does not override where the user put the header."""
    window = ai_window(models_chest)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, window.docks["header"])
    window.docks["ai_history"].close()
    window.close()  # saves the layout
    again = ai_window(models_chest)
    assert again.dockWidgetArea(again.docks["header"]) == Qt.DockWidgetArea.LeftDockWidgetArea
    assert again.docks["ai_history"].isHidden()
    assert not again.docks["ai_results"].isHidden()


def test_out_of_scope_state_and_run_anyway_marked(qtbot: Any, ai_window: Any, models_knee: Path,
                                                 study: Path, tmp_path: Path) -> None:
    window = ai_window(models_knee)
    _open(qtbot, window, study)
    result = _analyse(qtbot, window)
    assert result.result("pneumonia").status == OUT_OF_SCOPE  # type: ignore[union-attr]
    panel = window.ai.panel
    assert "not analysed: outside the model's intended input" in panel.state_label.text().lower()
    # plain words for the gate; its scores only in the details (tooltip)
    assert "not a chest radiograph: chest models not run" in panel.gate_label.text()
    assert "%" not in panel.gate_label.text() and "knee" in panel.gate_label.toolTip()
    assert panel.force_button.isEnabled()
    with qtbot.waitSignal(window.ai.controller.sig_result_ready, timeout=20000) as blocker:
        panel.force_button.click()
    forced = blocker.args[1].result("pneumonia")
    assert forced.status == OK and forced.forced
    head = next(panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount())
                if panel.tree.topLevelItem(i).data(0, 256) == "pneumonia")
    assert "FORCED" in head.text(1)
    assert "(forced)" in window.grid.thumb_model.badges[window.images.current.key]
    out = window.ai.export_to("results_image", tmp_path / "exports" / "r.json")
    assert out is not None
    rows = json.loads(out.read_text())["results"]
    assert any(r["model_id"] == "pneumonia" and r["forced"] is True for r in rows)


def test_overlay_controls_reach_the_canvas(qtbot: Any, ai_window: Any, models_chest: Path,
                                           study: Path) -> None:
    window = ai_window(models_chest)
    _open(qtbot, window, study)
    result = _analyse(qtbot, window)
    ov, canvas = window.ai.overlays, window.canvas
    assert ov.mask_data is not None and ov.heatmap is not None
    assert canvas.mask_layer.item.isVisible() and canvas.heatmap_layer.item.isVisible()
    mask_box, heat_box = ov.mask_group(), ov.heatmap_group()
    assert mask_box.title() == "Mask: lung (lungs, lung field)"  # one group per overlay
    heat_box.opacity.setValue(20)
    assert canvas.heatmap_layer.item.opacity() == pytest.approx(0.2)
    before = canvas.heatmap_layer.item.image.copy()
    ov.heat_colormap.setCurrentText("viridis")
    assert not np.array_equal(before, canvas.heatmap_layer.item.image)
    filled = canvas.mask_layer.item.image[..., 3].astype(bool).sum()
    mask_box.mode.setCurrentText("contour")
    contour = canvas.mask_layer.item.image[..., 3].astype(bool).sum()
    assert filled == int((ov.mask_data > 0).sum()) > 0
    assert contour == int(mask_contour(ov.mask_data, thickness=3).sum()) <= filled
    mask_box.visible.setChecked(False)
    assert not canvas.mask_layer.item.isVisible()
    # class selector: the other class's Grad-CAM++ map is a different map
    heat_before = ov.heatmap.copy()
    share_before = heat_box.share.text()
    assert share_before.endswith("% (lungs)")  # the declared share names its segmenter
    other = 1 - heat_box.klass.currentIndex()
    heat_box.klass.setCurrentIndex(other)
    assert not np.allclose(heat_before, ov.heatmap)
    assert "%" in heat_box.share.text()
    # the model's input view shows the preprocessed 64x64 image
    arr = window.ai.model_input.shown_array()
    assert arr is not None and arr.shape == (64, 64)
    assert result.result("pneumonia").model_view is not None  # type: ignore[union-attr]


def test_batch_badges_sort_and_filter(qtbot: Any, ai_window: Any, models_chest: Path,
                                      study: Path) -> None:
    window = ai_window(models_chest)
    _open(qtbot, window, study)
    ai = window.ai
    with qtbot.waitSignal(ai.controller.sig_batch_finished, timeout=30000) as blocker:
        ai.analyse_shown()
    assert blocker.args[:2] == [3, 0]
    model = window.grid.thumb_model
    assert len(model.badges) == 3 and all("%" in b for b in model.badges.values())
    ai.sort_combo.setCurrentIndex(1)
    scores = [ai.controller.results[r.key].result("pneumonia").probabilities["pneumonia"]
              for r in model.records]
    assert scores == sorted(scores, reverse=True)
    band = ai.controller.results[model.records[0].key].result("pneumonia").band
    ai.filter_combo.setCurrentIndex(ai.filter_combo.findData(f"band:{band}"))
    assert 1 <= len(model.records) <= 3
    assert all(model.badge_colours[r.key] == band for r in model.records)
    ai.filter_combo.setCurrentIndex(ai.filter_combo.findData("none:"))
    assert model.rowCount() == 0
    ai.filter_combo.setCurrentIndex(0)
    assert model.rowCount() == 3


def test_history_lists_and_reopens_with_overlays(qtbot: Any, ai_window: Any, models_chest: Path,
                                                 study: Path) -> None:
    window = ai_window(models_chest)
    _open(qtbot, window, study)
    _analyse(qtbot, window)
    hist = window.ai.history
    assert hist.table.rowCount() == 0  # the dock is behind another tab: refreshed when shown
    window.ai.history_dock.raise_()
    qtbot.waitUntil(lambda: hist.table.rowCount() == 3, timeout=5000)  # gate, classifier, lungs
    hist.search.setText("pneumonia")
    hist.refresh()
    assert hist.table.rowCount() == 1
    row_file = hist.table.item(0, 1).text()
    assert row_file.endswith(".dcm")
    window.grid.select_row(2)  # show another image first
    qtbot.waitUntil(lambda: window.images.current is not None
                    and window.images.current.path.endswith(row_file) is False, timeout=10000)
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        hist.reopen(0)
    assert window.images.current.path.endswith(row_file)
    assert window.canvas.heatmap_layer.item.isVisible()
    assert window.canvas.mask_layer.item.isVisible()


def test_corrupt_history_is_reported(qtbot: Any, ai_window: Any, models_chest: Path,
                                     tmp_path: Path, study: Path) -> None:
    db = tmp_path / "hist" / "h.sqlite"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite" * 100)
    window = ai_window(models_chest)
    _open(qtbot, window, study)
    _analyse(qtbot, window)
    assert "could not be read" in window.ai.history.message.text()
    assert any("could not be read" in m for m in window.ai.notifications)
    assert list(db.parent.glob("h.sqlite.corrupt-*"))


def test_models_dialog_lists_unavailable_with_reason(qtbot: Any, tmp_path: Path,
                                                     models_chest: Path) -> None:
    folder = tmp_path / "broken_models"
    folder.mkdir()
    doc = json.loads((models_chest / "pneumonia.json").read_text())
    doc["id"] = "bad_checksum"
    (folder / "pneumonia.onnx").write_bytes((models_chest / "pneumonia.onnx").read_bytes()[:-10])
    (folder / "bad_checksum.json").write_text(json.dumps(doc))
    doc2 = dict(doc, id="missing_file", file="nowhere.onnx")
    (folder / "missing_file.json").write_text(json.dumps(doc2))
    registry = ModelRegistry([folder, models_chest])
    dialog = ModelsDialog(registry)
    qtbot.addWidget(dialog)
    items = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert any(t.startswith("bad_checksum") and "unavailable" in t for t in items)
    assert any(t.startswith("missing_file") and "unavailable" in t for t in items)
    assert any(t.startswith("pneumonia") and "(available)" in t for t in items)
    row = next(i for i, t in enumerate(items) if t.startswith("pneumonia"))
    dialog.list.setCurrentRow(row)
    text = dialog.text.toPlainText()
    for needle in ("Intended use", "Operating threshold", "Confidence bands", "Calibration",
                   "0.0.1-test", RESEARCH_NOTICE, "provider"):
        assert needle in text


def test_badge_marks_a_result_with_a_caution() -> None:
    from viewer.services.analysis_types import ModelResult
    from viewer.ui.results_panel import badge_text

    def result(caution: str | None) -> AnalysisResult:
        res = ModelResult("covid", "3.0.0", "classification", OK, label="covid",
                          probabilities={"normal": 0.39, "covid": 0.61}, confidence=0.61,
                          band="red", threshold=0.18, positive_label="covid", caution=caution)
        return AnalysisResult("img", "/x.dcm", (10, 10), None, (res,))

    plain, colour = badge_text(result(None))
    marked, _ = badge_text(result("study date 2004-08-26 is before 2019-12-01"))
    assert colour == "red" and "covid 61%" in plain and "\u26a0" not in plain
    assert marked == plain + " \u26a0"


def test_about_shows_the_population_limits() -> None:
    from viewer.ui.model_info import about_html

    text = about_html({"available": True, "id": "covid", "name": "Covid", "age_years": [18, None],
                       "study_date_from": {"date": "2019-12-01", "why": "first described then"}})
    assert "Patient ages" in text and "18 and older" in text
    assert "Study dates from" in text and "2019-12-01" in text and "first described then" in text


def test_exports_from_the_ui(qtbot: Any, ai_window: Any, models_chest: Path, study: Path,
                             tmp_path: Path) -> None:
    import pydicom

    window = ai_window(models_chest)
    _open(qtbot, window, study)
    _analyse(qtbot, window)
    ai, out = window.ai, tmp_path / "exports"
    csv_path = ai.export_to("results_image", out / "r.csv")
    assert csv_path is not None and "model_version" in csv_path.read_text()
    png = ai.export_to("png", out / "view.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
    seg = ai.export_to("seg", out / "seg.dcm")
    sc = ai.export_to("sc", out / "sc.dcm")
    assert seg is not None and sc is not None, ai.notifications
    src_uid = pydicom.dcmread(window.images.current.path).SOPInstanceUID
    seg_ds, sc_ds = pydicom.dcmread(seg), pydicom.dcmread(sc)
    assert seg_ds.Modality == "SEG"
    # one segment per declared segment, coded from the manifest (lungs: SNOMED CT Lung)
    (segment,) = seg_ds.SegmentSequence
    assert (segment.SegmentLabel, segment.SegmentAlgorithmName) == ("lung", "lungs")
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"
    assert seg_ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0] \
        .ReferencedSOPInstanceUID == src_uid
    assert sc_ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src_uid
    # never into the study folder: refused and shown
    refused = ai.export_to("results_image", study / "results.csv")
    assert refused is None and not (study / "results.csv").exists()
    assert "study folder" in ai.last_message


def test_deidentified_exports_from_the_ui(qtbot: Any, ai_window: Any, models_chest: Path,
                                          study: Path, tmp_path: Path) -> None:
    import pydicom

    window = ai_window(models_chest)
    _open(qtbot, window, study)
    _analyse(qtbot, window)
    ai, out = window.ai, tmp_path / "deid"
    ai.action_map["export_deidentify"].setChecked(True)
    src = pydicom.dcmread(window.images.current.path)
    csv_text = ai.export_to("results_image", out / "r.csv").read_text()
    assert str(src.PatientID) not in csv_text and str(src.SOPInstanceUID) not in csv_text
    assert Path(window.images.current.path).name not in csv_text
    seg_ds = pydicom.dcmread(ai.export_to("seg", out / "seg.dcm"))
    sc_path = ai.export_to("sc", out / "sc.dcm")
    sc_ds = pydicom.dcmread(sc_path)
    for ds in (seg_ds, sc_ds):
        assert str(ds.PatientName) != str(src.PatientName) and ds.PatientID != src.PatientID
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.StudyInstanceUID != src.StudyInstanceUID
    # the SEG still references the source under its new (consistent within one export) UID
    assert seg_ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0] \
        .ReferencedSOPInstanceUID != src.SOPInstanceUID
    # the generated file has no (0028,0301) Burned In Annotation: the user is warned
    assert "Burned In Annotation" in ai.last_message and str(sc_path) in ai.last_message
    # A de-identified PNG "as seen" leaves the patient overlay out, even while it is on screen
    # (issue 15: it used to burn the name and ID in), and the screen keeps showing it.
    import cv2

    label = window.canvas.overlay_label
    assert label.isVisible() and label.text()
    deid_png = cv2.imread(str(ai.export_to("png", out / "view.png")))
    assert label.isVisible()
    ai.action_map["export_deidentify"].setChecked(False)
    with_overlay = cv2.imread(str(ai.export_to("png", out / "view-id.png")))
    window.action_map["overlay"].setChecked(False)  # hide it by hand: what the deid grab is
    assert not label.isVisible()
    without = cv2.imread(str(ai.export_to("png", out / "view-hidden.png")))
    assert np.array_equal(deid_png, without) and not np.array_equal(deid_png, with_overlay)


def _analyse_shared_file(qtbot: Any, ai_window: Any, shared_dicom: Path,
                         name: str) -> tuple[Any, AnalysisResult]:
    """Open one file of the shared DICOM set with the committed models and analyse it."""
    from viewer.inference.registry import bundled_models_dir

    path = shared_dicom / name
    if not path.exists():
        pytest.skip(f"{name} not in the shared data")
    window = ai_window(bundled_models_dir())
    with qtbot.waitSignal(window.sig_image_displayed, timeout=60000):
        window.open_paths([str(path)])
    return window, _analyse(qtbot, window)


@pytest.mark.slow
def test_real_models_on_a_real_chest_dicom(qtbot: Any, ai_window: Any, shared_dicom: Path) -> None:
    """End to end with the committed models on a real adult chest CR from 2004: gated as
    chest; both disease models say it is outside their data (the covid model by its study
    date, the paediatric pneumonia model by its own applicability check), shown grey and never
    as a finding; "Run anyway" gives the marked answers, with version and heatmap in the panel."""
    window, result = _analyse_shared_file(qtbot, ai_window, shared_dicom, "RG1_JLSN.dcm")
    assert result.gate is not None and result.gate.region == "chest"
    for model in ("pneumonia", "covid"):
        res = result.result(model)
        assert res is not None and res.status in ("outside_data", OK)
        if res.status == "outside_data":
            assert res.label is None and res.heatmap is None
            assert "outside this model's data" in (res.reason or "")
    assert result.result("covid").status == "outside_data"  # a 2004 film: before COVID-19
    panel = window.ai.panel
    assert "chest" in panel.gate_label.text()
    badge = window.grid.thumb_model.badges[window.images.current.key]
    if all(r.status != OK for r in result.results if r.model_id in ("pneumonia", "covid")):
        assert "outside" in badge
    with qtbot.waitSignal(window.ai.controller.sig_result_ready, timeout=60000) as blocker:
        panel.force_button.click()
    forced = blocker.args[1].result("pneumonia")
    assert forced.status == OK and forced.heatmap is not None
    head = next(panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount())
                if panel.tree.topLevelItem(i).data(0, 256) == "pneumonia")
    assert f"v{forced.model_version}" in head.text(0)
    assert forced.forced == ("FORCED" in head.text(1))
    assert window.canvas.heatmap_layer.item.isVisible()


def test_overlay_is_painted_while_the_preview_stands_in(qtbot: Any) -> None:
    """Zoomed out on a large image the full-resolution item is transparent (preview layer);
    the heatmap, its child, must still be painted."""
    from viewer.state.display_plan import prepare_image, voi_to_window
    from viewer.state.view_state import ViewState
    from viewer.ui.canvas import ImageCanvas
    from viewer.ui.export_actions import grab_rgb

    from tests.ui.helpers import gradient_radiograph

    canvas = ImageCanvas(ViewState())
    qtbot.addWidget(canvas)
    canvas.resize(400, 400)
    canvas.show()
    qtbot.waitExposed(canvas)
    prepared = prepare_image(gradient_radiograph(rows=2400, cols=2000))
    canvas.set_image(prepared, voi_to_window(prepared.voi), prepared.voi)
    canvas.preview.update()
    assert canvas.preview.active
    before = grab_rgb(canvas).astype(int)
    heat = np.zeros((2400, 2000), np.float32)
    heat[600:1800, 500:1500] = 1.0
    canvas.set_heatmap(heat, 0.8)
    after = grab_rgb(canvas).astype(int)
    assert np.abs(after - before).mean() > 1.0


def test_result_for_an_image_no_longer_shown_is_dropped(qtbot: Any, ai_window: Any,
                                                         models_chest: Path, study: Path) -> None:
    window = ai_window(models_chest)
    _open(qtbot, window, study)
    ctl = window.ai.controller
    shown = window.images.current
    other = next(r for r in window.library.records if r is not shown)
    emitted: list[Any] = []
    ctl.sig_result_ready.connect(lambda rec, res: emitted.append(rec))
    ctl.analyse(shown, window.canvas.prepared.radiograph)
    ctl.set_current(other)  # the user moved on before the result came back
    qtbot.waitUntil(lambda: ctl.bridge.pending() == 0, timeout=20000)
    ctl.bridge.drain()
    assert emitted == [] and ctl.current_result is None


def test_batch_cancel_is_prompt_and_reported(qtbot: Any, ai_window: Any, models_chest: Path,
                                             tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(40):
        dicom_factory.write_dicom(root / f"m{i}.dcm", _chest_like(seed=i), bits_stored=12,
                                  StudyInstanceUID="1.2.3.9", SeriesInstanceUID="1.2.3.9.1",
                                  InstanceNumber=i + 1)
    window = ai_window(models_chest)
    _open(qtbot, window, root)
    ctl = window.ai.controller
    with qtbot.waitSignal(ctl.sig_batch_progressed, timeout=20000):
        window.ai.analyse_shown()
    with qtbot.waitSignal(ctl.sig_batch_finished, timeout=5000) as blocker:
        window.ai.action_map["cancel_analysis"].trigger()
    assert blocker.args[2] is True  # cancelled
    assert blocker.args[0] == len(ctl.results) < 40
    assert "cancelled" in window.ai.last_message


def test_user_models_folder_setting_rediscovers(qtbot: Any, ai_window: Any, models_chest: Path,
                                                models_knee: Path) -> None:
    window = ai_window(models_chest)
    window.ai.set_models_dir(models_knee)
    assert window.ai.registry.folders[0] == models_knee
    assert window.ai.service.registry is window.ai.registry
    assert window.settings.qsettings.value("ai/models_dir") == str(models_knee)
    # the bundled models with the same ids are listed as shadowed, not lost
    assert all("shadowed" in (e.reason or "") for e in window.ai.registry.unavailable())


@pytest.mark.slow
def test_real_gate_keeps_a_non_chest_image_out_of_scope(qtbot: Any, ai_window: Any,
                                                        shared_dicom: Path) -> None:
    """The veterinary radiograph in the shared set is not analysed by the chest models."""
    window, result = _analyse_shared_file(qtbot, ai_window, shared_dicom, "jpeg-baseline.dcm")
    assert result.gate is not None and result.gate.region != "chest"
    assert result.result("pneumonia").status == OUT_OF_SCOPE  # type: ignore[union-attr]
    panel = window.ai.panel
    assert "not analysed" in panel.state_label.text().lower() and panel.force_button.isEnabled()
    assert "not analysed" in window.grid.thumb_model.badges[window.images.current.key]


def test_panel_shows_a_population_caution(qtbot: Any) -> None:
    from viewer.services.analysis_types import ModelResult
    from viewer.ui.results_panel import ResultsPanel

    panel = ResultsPanel()
    qtbot.addWidget(panel)
    caution = "patient age 4 years is outside this model's population (adult): trained on 18 years and older"
    res = ModelResult("covid", "2.0.0", "classification", OK, label="normal",
                      probabilities={"normal": 0.8, "covid": 0.2}, confidence=0.8, band="orange",
                      threshold=0.5, positive_label="covid", caution=caution)
    panel.set_result(AnalysisResult("img", "/x.dcm", (10, 10), None, (res,)), {})
    head = panel.tree.topLevelItem(0)
    rows = [head.child(i).text(0) for i in range(head.childCount())]
    assert any("Caution" in r and caution in r for r in rows)
    # still analysed (the caution is advisory), and the call is in words: no finding, with the
    # positive class's probability and the operating point (not "normal 80 %")
    assert head.text(1) == "no covid 20% <50%"
    assert any("no covid (normal): P(covid) 20.0% is below the operating threshold 50%" in r for r in rows)
    assert caution in panel.caution_label.text()  # also in full, wrapped, under the table


def test_panel_keeps_verdict_and_band_in_view_in_a_narrow_dock(qtbot: Any) -> None:
    """A long model name, caution or note must not push the probability off-screen."""
    from viewer.services.analysis_types import ModelResult
    from viewer.ui.results_panel import ResultsPanel

    panel = ResultsPanel()
    qtbot.addWidget(panel)
    panel.resize(380, 500)
    panel.show()
    qtbot.waitExposed(panel)
    caution = ("patient age 64 years is outside this model's population (paediatric, 1-5 years): "
               "results may not hold")
    res = ModelResult("pneumonia", "1.0.0", "classification", OK, label="pneumonia",
                      probabilities={"normal": 0.1, "pneumonia": 0.9}, confidence=0.9,
                      band="green", threshold=0.2, positive_label="pneumonia", caution=caution)
    panel.set_result(AnalysisResult("img", "/x.dcm", (10, 10), None, (res,)), {})
    qtbot.wait(20)
    header = panel.tree.header()
    viewport = panel.tree.viewport().width()
    for col in (1, 2):
        right = header.sectionViewportPosition(col) + header.sectionSize(col)
        assert header.sectionSize(col) > 0 and right <= viewport, (col, right, viewport)
    head = panel.tree.topLevelItem(0)
    assert head.text(1) == "pneumonia 90% >=20%" and "high confidence" in head.text(2)
    note = next(head.child(i) for i in range(head.childCount()) if "Caution" in head.child(i).text(0))
    assert note.isFirstColumnSpanned() and caution in note.toolTip(0)


def test_history_table_shows_a_stored_caution(qtbot: Any, tmp_path: Path) -> None:
    from viewer.services.analysis_types import ModelResult
    from viewer.services.history import HistoryStore
    from viewer.ui.history_dock import COLUMNS, HistoryPanel

    caution = "patient age 40 years is outside this model's population (paediatric)"
    warned = ModelResult("pneumonia", "1.0.0", "classification", OK, label="normal",
                         probabilities={"normal": 0.9, "pneumonia": 0.1}, confidence=0.9,
                         band="green", threshold=0.5, caution=caution)
    plain = ModelResult("lungs", "2.0.0", "segmentation", OK, label="lung")
    with HistoryStore(tmp_path / "h.sqlite") as store:
        store.record(store.new_run(), AnalysisResult("img", "/x/a.dcm", (10, 10), None, (warned, plain)))
        panel = HistoryPanel(lambda: store)
        qtbot.addWidget(panel)
        panel.refresh()
        col = COLUMNS.index("Caution")
        cells = {panel.table.item(r, 2).text(): panel.table.item(r, col) for r in range(2)}
        assert cells["pneumonia"].text() == "\u26a0 " + caution
        assert cells["pneumonia"].toolTip() == caution
        assert cells["lungs"].text() == ""
