"""A fifth model in a user folder changes nothing for the others (issue 17).

The fifth model is a second segmenter: the committed lungs network (its ONNX file, read in
place) with a manifest that relabels its output "pneumothorax", role ``finding``, a stricter
threshold and its own SNOMED CT codes. On a real chest radiograph, with and without it: the
covid and pneumonia heatmap shares stay what they were (they are measured against the
``lung_field`` role, which only the lungs model declares), and the new model gets its own mask
file, its own DICOM SEG segment with its own codes, and its own row in the CSV, the JSON and the
history.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from viewer.cli import analyze_main
from viewer.inference.registry import ModelRegistry, bundled_models_dir
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_inputs import input_from_radiograph
from viewer.services.history import HistoryStore

IMAGE = "RG1_J2KI.dcm"  # a real adult chest CR the committed chest models run on
PTX_CATEGORY = ["SCT", "49755003", "Morphologically Altered Structure"]
PTX_TYPE = ["SCT", "36118008", "Pneumothorax"]


def _fifth_model(folder: Path) -> Path:
    """The committed lungs network relabelled as a pneumothorax segmenter (file read in place)."""
    lungs = json.loads((bundled_models_dir() / "lungs.json").read_text())
    onnx = (bundled_models_dir() / lungs["file"]).resolve()
    manifest = {
        "schema": 2, "id": "pneumothorax", "version": "0.1.0-test",
        "name": "Pneumothorax segmentation (test: the lungs network relabelled)",
        "task": "segmentation", "file": str(onnx),
        "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest(),
        "labels": ["background", "pneumothorax"], "input": lungs["input"],
        "outputs": lungs["outputs"], "threshold": 0.5,
        "segments": [{"label": "pneumothorax", "channel": 1, "role": "finding",
                      "threshold": 0.9, "category": PTX_CATEGORY, "type": PTX_TYPE}],
        "measurements": [{"kind": "area_fraction", "segment": "pneumothorax"},
                         {"kind": "presence", "segment": "pneumothorax",
                          "min_area_fraction": 0.01}],
        "applies_to": lungs["applies_to"],
        "intended_use": "Research use, not for diagnosis. Test model.",
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pneumothorax.json").write_text(json.dumps(manifest, indent=1))
    return folder


@pytest.fixture(scope="module")
def user_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fifth_model(tmp_path_factory.mktemp("user") / "models")


@pytest.fixture(scope="module")
def chest(shared_dicom: Path) -> Path:
    path = shared_dicom / IMAGE
    if not path.is_file():
        pytest.skip(f"{IMAGE} is not in the shared data folder")
    return path


def _analyse(registry: ModelRegistry, path: Path):  # type: ignore[no-untyped-def]
    from viewer.dicom.load import load_radiograph

    inp = input_from_radiograph(load_radiograph(str(path)), str(path))
    # Forced ("Run anyway"): the committed models call this 2004 film outside their data.
    return AnalysisService(registry, SessionPool(1)).analyse(inp, force=True)


def test_the_fifth_model_changes_nothing_for_the_others(chest: Path, user_models: Path) -> None:
    four = _analyse(ModelRegistry.default(), chest)
    five = _analyse(ModelRegistry.default([user_models]), chest)
    ids = [r.model_id for r in five.results]
    assert [i for i in ids if i != "pneumothorax"] == [r.model_id for r in four.results]
    assert "pneumothorax" in ids
    for model_id in ("covid", "pneumonia"):
        before, after = four.result(model_id), five.result(model_id)
        assert before is not None and after is not None and before.status == "ok"
        share = after.measurement("heatmap_share", "lung_field")
        assert share is not None and share.source == "lungs"  # never "the first segmentation"
        assert share.key == f"{model_id}.heatmap_share.lung_field"
        # Same inputs, same models: equal up to float summation order (onnxruntime/OpenCV
        # threads may reorder the last bit; CI once saw ...096 against ...097).
        assert before.heatmap_in_lung is not None
        assert after.heatmap_in_lung == pytest.approx(before.heatmap_in_lung, rel=1e-9)
        assert after.as_row() == before.as_row()
    np.testing.assert_array_equal(five.result("lungs").mask, four.result("lungs").mask)
    ptx = five.result("pneumothorax")
    assert ptx is not None and ptx.status == "ok" and ptx.label == "pneumothorax"
    (overlay,) = ptx.overlays_of("mask")
    assert (overlay.label, overlay.role) == ("pneumothorax", "finding")
    # The stricter threshold (0.9) on the same logits: a subset of the lung mask, and smaller.
    lung = five.result("lungs").mask
    assert overlay.array.shape == lung.shape and not np.any(overlay.array & ~lung)
    assert 0 < overlay.array.sum() < lung.sum()
    area = ptx.measurement("area_fraction", "pneumothorax")
    assert area is not None and area.value == pytest.approx(overlay.array.mean())
    assert ptx.measurement("presence", "pneumothorax").value == float(area.value > 0.01)


def test_its_own_mask_file_seg_segment_and_rows(chest: Path, user_models: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = analyze_main([str(chest), "--models-dir", str(user_models), "--quiet", "--force",
                       "--out", str(out / "r.csv"), "--masks", str(out / "masks"),
                       "--seg", str(out / "seg")])
    assert rc == 0
    with open(out / "r.csv", newline="") as fh:
        rows = {r["model_id"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"body_region", "covid", "pneumonia", "lungs", "pneumothorax"}
    ptx = json.loads(rows["pneumothorax"]["measurements"])
    assert set(ptx) == {"pneumothorax.area_fraction.pneumothorax",
                        "pneumothorax.presence.pneumothorax"}
    assert json.loads(rows["lungs"]["measurements"]).keys() == {"lungs.area_fraction.lung"}
    assert rows["covid"]["status"] == "ok" and rows["covid"]["forced"] == "True"
    # Declared, not measured without --heatmaps: the key stays, empty.
    assert json.loads(rows["covid"]["measurements"]) == {"covid.heatmap_share.lung_field": None}
    stem = chest.stem
    masks = sorted(p.name for p in (out / "masks").iterdir())
    assert masks == [f"{stem}_lungs.png", f"{stem}_pneumothorax.png"]  # no overwrite
    lung = cv2.imread(str(out / "masks" / f"{stem}_lungs.png"), cv2.IMREAD_UNCHANGED)
    ptx_mask = cv2.imread(str(out / "masks" / f"{stem}_pneumothorax.png"), cv2.IMREAD_UNCHANGED)
    assert lung.sum() > ptx_mask.sum() > 0
    (seg_path,) = (out / "seg").iterdir()
    seg = pydicom.dcmread(seg_path)
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 2
    described = {s.SegmentLabel: s for s in seg.SegmentSequence}
    assert set(described) == {"lung", "pneumothorax"}
    for label, (cat, typ) in {"lung": (["SCT", "123037004", "Anatomical Structure"],
                                       ["SCT", "39607008", "Lung"]),
                              "pneumothorax": (PTX_CATEGORY, PTX_TYPE)}.items():
        s = described[label]
        c = s.SegmentedPropertyCategoryCodeSequence[0]
        t = s.SegmentedPropertyTypeCodeSequence[0]
        assert [c.CodingSchemeDesignator, c.CodeValue, c.CodeMeaning] == cat
        assert [t.CodingSchemeDesignator, t.CodeValue, t.CodeMeaning] == typ
        assert s.SegmentAlgorithmName == ("lungs" if label == "lung" else "pneumothorax")
    # JSON: the same rows, measurements as objects
    assert analyze_main([str(chest), "--models-dir", str(user_models), "--quiet", "--force",
                         "--out", str(out / "r.json"), "--heatmaps", str(out / "heat")]) == 0
    doc = json.loads((out / "r.json").read_text())
    by_model = {r["model_id"]: r for r in doc["results"]}
    four = _analyse(ModelRegistry.default(), chest)
    for model_id in ("covid", "pneumonia"):
        share = by_model[model_id]["measurements"][f"{model_id}.heatmap_share.lung_field"]
        assert share == pytest.approx(four.result(model_id).heatmap_in_lung, abs=5e-5 + 1e-9)
    assert sorted(p.name for p in (out / "heat").iterdir()) == [
        f"{stem}_covid.png", f"{stem}_pneumonia.png"]
    assert by_model["pneumothorax"]["measurements"]["pneumothorax.presence.pneumothorax"] in (True, False)


def test_its_own_history_row(chest: Path, user_models: Path, tmp_path: Path) -> None:
    result = _analyse(ModelRegistry.default([user_models]), chest)
    with HistoryStore(tmp_path / "h.sqlite") as store:
        ids = store.record(store.new_run(), result)
        by_model = {e.model_id: e for e in store.entries()}
        assert {"lungs", "pneumothorax"} <= set(by_model)
        ptx = by_model["pneumothorax"]
        assert ptx.has_mask and "pneumothorax.area_fraction.pneumothorax" in ptx.measurements
        stored = store.stored_overlays(ids[[r.model_id for r in result.results].index("pneumothorax")])
        assert [(o.kind, o.label, o.role) for o in stored] == [("mask", "pneumothorax", "finding")]
        np.testing.assert_array_equal(stored[0].array, result.result("pneumothorax").mask)
        covid = by_model["covid"]
        assert covid.status == "ok" and covid.heatmap_in_lung is not None
        assert covid.heatmap_in_lung == pytest.approx(result.result("covid").heatmap_in_lung,
                                                      abs=1e-4)


def test_its_own_row_in_the_panel_and_its_own_overlay_group(qtbot, chest: Path,  # type: ignore[no-untyped-def]
                                                            user_models: Path) -> None:
    from viewer.state.view_state import ViewState
    from viewer.ui.canvas import ImageCanvas
    from viewer.ui.overlay_panel import MaskControls, OverlayPanel
    from viewer.ui.results_panel import ResultsPanel

    registry = ModelRegistry.default([user_models])
    result = _analyse(registry, chest)
    panel = ResultsPanel()
    qtbot.addWidget(panel)
    panel.set_result(result, {m.id: m for m in registry.available()})
    heads = {panel.tree.topLevelItem(i).data(0, 0x0100): panel.tree.topLevelItem(i)
             for i in range(panel.tree.topLevelItemCount())}
    assert {"covid", "pneumonia", "lungs", "pneumothorax"} <= set(heads)
    ptx = heads["pneumothorax"]
    present = result.result("pneumothorax").measurement("presence", "pneumothorax").value
    assert ptx.text(1) == ("present: pneumothorax" if present else "no finding")
    keys = {ptx.child(i).data(0, 0x0100) for i in range(ptx.childCount())}
    assert {"pneumothorax.area_fraction.pneumothorax", "pneumothorax.presence.pneumothorax"} <= keys
    covid = heads["covid"]
    share = next(covid.child(i) for i in range(covid.childCount())
                 if covid.child(i).data(0, 0x0100) == "covid.heatmap_share.lung_field")
    assert share.text(0).strip() == "heatmap mass inside lungs (lungs)"

    canvas = ImageCanvas(ViewState())
    qtbot.addWidget(canvas)
    overlays = OverlayPanel(canvas)
    qtbot.addWidget(overlays)
    overlays.set_result(result)
    masks = [g for g in overlays.groups if isinstance(g, MaskControls)]
    assert [g.title() for g in masks] == ["Mask: lung (lungs, lung field)",
                                          "Mask: pneumothorax (pneumothorax, finding)"]
    assert masks[0].layer is canvas.mask_layer and masks[1].layer is not canvas.mask_layer
    assert masks[0].colour.currentText() != masks[1].colour.currentText()
    assert masks[1].layer.item.isVisible()
    masks[1].visible.setChecked(False)
    assert not masks[1].layer.item.isVisible() and canvas.mask_layer.item.isVisible()
    heats = overlays.groups_of("heatmap")
    assert len(heats) == 2 and [g.visible.isChecked() for g in heats] == [True, False]
    overlays.clear()
    assert overlays.groups == [] and not masks[1].layer.item.isVisible()
