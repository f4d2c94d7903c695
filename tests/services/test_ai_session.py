"""The window's AI use case without Qt (viewer.services.ai_session, viewer.services.ai_exports):
results per image, calls and badges, grid order, the models folders and the session's exports,
on real onnxruntime runs of the tiny generated models and real DICOM files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests import dicom_factory
from tests.inference.tiny_models import tiny_models_dir  # noqa: F401
from viewer.core.radiograph import Radiograph
from viewer.dicom.load import load_radiograph
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services import ai_exports
from viewer.services.ai_session import (
    NOT_ANALYSED, AiSession, badge, call_of, filter_choices, model_folders, order_records,
    suspicion, top_finding,
)
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_inputs import input_from_record
from viewer.services.analysis_types import (
    OK, OUT_OF_SCOPE, AnalysisResult, FindingResult, GateAnswer, Measurement, ModelResult, Overlay,
)
from viewer.services.export import ExportError
from viewer.services.library import scan_paths


@dataclass(frozen=True)
class Rec:
    """A record as the session sees one: a key and a source."""

    name: str

    @property
    def key(self) -> tuple[str, None]:
        return (self.name, None)

    @property
    def source(self) -> str:
        return self.name


def _clf(p: float, *, model: str = "pneumonia", forced: bool = False, band: str = "green",
         status: str = OK) -> ModelResult:
    label = model if p >= 0.5 else "normal"
    return ModelResult(model, "1.0.0", "classification", status, label=label if status == OK else None,
                       probabilities={"normal": 1 - p, model: p}, confidence=max(p, 1 - p), band=band,
                       threshold=0.5, positive_label=model, forced=forced)


def _result(name: str, *results: ModelResult, gate: GateAnswer | None = None) -> AnalysisResult:
    return AnalysisResult(name, name, (8, 8), gate, tuple(results))


def test_calls_badges_and_suspicion_come_from_the_declarations() -> None:
    pos, neg = _clf(0.83, band="orange"), _clf(0.12)
    assert (call_of(pos), call_of(neg), call_of(_clf(0.9, forced=True))) == ("finding", "no finding", "forced")
    # a segmenter's call is its declared presence, never its id
    seg = ModelResult("ptx", "1", "segmentation", OK, label="pneumothorax", measurements=(
        Measurement("ptx.presence.pneumothorax", "presence", "ptx", "pneumothorax", 1.0),))
    plain_seg = ModelResult("lungs", "1", "segmentation", OK, label="lung")
    assert call_of(seg) == "finding" and call_of(plain_seg) is None
    multi = ModelResult("chest14", "1", "classification", OK, label="edema", findings=(
        FindingResult("edema", 0.83, 0.5, "positive", "orange"),
        FindingResult("mass", 0.2, 0.4, "negative", "green")))
    assert call_of(multi) == "finding"
    b = badge(_result("a", neg, pos, seg))
    assert b.text.startswith("\u25b2 pneumonia 83%") and "pneumothorax (mask)" in b.text
    assert (b.band, b.call) == ("orange", "finding")
    assert set(b.labels) == {"pneumonia", "pneumothorax"}
    assert suspicion(_result("s", seg)) == 1.0 and suspicion(None) == -1.0
    # the gate is never the top finding, whatever its probability
    gate = GateAnswer("chest", 0.99, None, None, "CHEST", "PA")
    res = _result("g", _clf(0.99, model="body_region"), neg, gate=gate)
    best = top_finding(res)
    assert best is not None and best.model_id == "pneumonia"
    assert suspicion(res) == pytest.approx(0.12)
    out = ModelResult("pneumonia", "1", "classification", OUT_OF_SCOPE)
    assert badge(_result("o", out, gate=GateAnswer("knee", 0.9, None, None, None, None))).text == \
        "\u2298 not analysed (knee)"


def test_order_filters_and_sorts_stably() -> None:
    recs = [Rec(n) for n in "abcde"]
    results = {
        recs[0].key: _result("a", _clf(0.30)),
        recs[1].key: _result("b", _clf(0.95, band="green")),
        recs[2].key: _result("c", _clf(0.60, band="orange")),
        recs[4].key: _result("e", _clf(0.30)),  # d is not analysed
    }
    assert order_records(recs, results) == recs
    names = [r.name for r in order_records(recs, results, most_suspicious=True)]
    assert names == ["b", "c", "a", "e", "d"]  # equal scores keep folder order
    assert [r.name for r in order_records(recs, results, "band:orange")] == ["c"]
    assert [r.name for r in order_records(recs, results, "label:pneumonia")] == ["b", "c"]
    assert [r.name for r in order_records(recs, results, NOT_ANALYSED)] == ["d"]
    assert ("band: red", "band:red") in filter_choices()
    assert filter_choices(["edema"])[-1] == ("label: edema", "label:edema")
    with pytest.raises(ValueError, match="unknown grid filter"):
        order_records(recs, results, "colour:blue")


def test_session_keeps_one_full_result_for_the_image_on_screen() -> None:
    session = AiSession()
    a, b = Rec("a"), Rec("b")
    heat = np.ones((8, 8), np.float32)
    full = AnalysisResult("a", "a", (8, 8), None, (ModelResult(
        "pneumonia", "1", "classification", OK, label="pneumonia", probabilities={"pneumonia": 0.9},
        positive_label="pneumonia", overlays=(Overlay("heatmap", "pneumonia", "pneumonia", heat),)),))
    assert session.show(a) and not session.show(a)
    session.add(a, full)
    assert session.current_result is full and session.shown_result() is full
    kept = session.results[a.key]
    assert kept.results[0].heatmap is None  # kept without arrays
    assert session.result_for_source("a") is full
    session.add_batch(b, _result("b", _clf(0.2)))
    assert session.unanalysed([a, b, Rec("c")]) == [Rec("c")]
    assert session.show(b) and session.current_result is None
    assert session.result_of(a) is kept and session.result_of(b) is session.results[b.key]
    assert session.result_for_source("a") is kept
    assert [r.image_id for r in session.scope("results_folder", opened=[a, b, Rec("c")])] == ["a", "b"]
    assert [r.image_id for r in session.scope("results_selection", selected=[b])] == ["b"]
    assert [r.image_id for r in session.scope("results_image")] == ["b"]
    session.show(None)
    assert session.scope("results_image") == [] and session.shown_result() is None


def test_model_folders_put_the_user_models_folder_after_the_chosen_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user-models"
    monkeypatch.setenv("RADVIEW_MODELS_DIR", str(user))
    assert model_folders() == [user]
    assert model_folders([tmp_path / "cli"], tmp_path / "chosen") == \
        [tmp_path / "cli", tmp_path / "chosen", user]
    assert model_folders([user, tmp_path / "cli"], str(user)) == [user, tmp_path / "cli"]  # once
    assert ModelRegistry.default(model_folders()).folders[0] == user


def test_service_modules_import_no_qt() -> None:
    code = ("import sys, viewer.services.ai_session, viewer.services.ai_exports; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# -- exports of a session, end to end ---------------------------------------------------------
def _chest_like(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(600, 3000, (96, 112)).astype(np.uint16)
    img[19:-19, 14:52] = 300
    img[19:-19, 60:-14] = 350
    return img


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path):
    """Two real DICOM files analysed by the tiny chest models, the first one on screen."""
    study = tmp_path_factory.mktemp("ai-session") / "study"
    for i in range(2):
        dicom_factory.write_dicom(study / f"img{i}.dcm", _chest_like(i), bits_stored=12,
                                  PatientName="Test^Session", PatientID="S1",
                                  BodyPartExamined="CHEST", ViewPosition="PA", InstanceNumber=i + 1)
    records = [r for r in scan_paths([str(study)], workers=1).index.records() if r.is_image]
    registry = ModelRegistry([tiny_models_dir])
    service = AnalysisService(registry, SessionPool(1))
    session = AiSession()
    session.show(records[0])
    for rec in records:
        session.add(rec, service.analyse(input_from_record(rec)))
    return study, records, registry, session


def test_session_exports_results_seg_and_sc(analysed, tmp_path: Path) -> None:
    study, records, registry, session = analysed
    folders = ai_exports.study_folders(records, [str(study)])
    models = registry.available()
    out = tmp_path / "exports"
    one = ai_exports.export_current("results_image", out / "one.csv", session, folders, models=models)
    rows = list(csv.DictReader(one.path.open()))
    assert {r["file"] for r in rows} == {records[0].source}
    assert {r["model_id"] for r in rows} >= {"pneumonia", "lungs"}
    every = ai_exports.export_current("results_folder", out / "all.json", session, folders,
                                      models=models, opened=records)
    doc = json.loads(every.path.read_text())
    assert {r["file"] for r in doc["results"]} == {r.source for r in records}
    assert every.message() == f"Exported to {every.path}"
    seg = ai_exports.export_current("seg", out / "seg.dcm", session, folders, models=models)
    ds = pydicom.dcmread(seg.path)
    (segment,) = ds.SegmentSequence  # one per declared segment, with the manifest's codes
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "39607008"
    src = pydicom.dcmread(records[0].path)
    assert ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID \
        == src.SOPInstanceUID
    rg: Radiograph = load_radiograph(records[0])
    sc = ai_exports.export_current("sc", out / "sc.dcm", session, folders, models=models,
                                   radiograph=rg, deidentify=True)
    sc_ds = pydicom.dcmread(sc.path)
    assert sc_ds.SourceImageSequence[0].ReferencedSOPInstanceUID != src.SOPInstanceUID
    assert sc_ds.PatientID != src.PatientID and sc.deidentified
    assert sc.caution is not None and "Burned In Annotation" in sc.message()


def test_session_exports_are_refused_with_a_reason(analysed, tmp_path: Path) -> None:
    study, records, registry, session = analysed
    folders = ai_exports.study_folders(records, [str(study)])
    with pytest.raises(ExportError, match="study folder"):
        ai_exports.export_current("results_image", study / "r.csv", session, folders)
    assert not (study / "r.csv").exists()
    with pytest.raises(ExportError, match="no image on screen"):
        ai_exports.export_current("sc", tmp_path / "sc.dcm", session, folders)
    empty = AiSession()
    with pytest.raises(ExportError, match="analyse the image first"):
        ai_exports.export_current("seg", tmp_path / "s.dcm", empty, folders)
    with pytest.raises(ExportError, match="nothing to export"):
        ai_exports.export_current("results_selection", tmp_path / "s.csv", session, folders,
                                  selected=[])
    with pytest.raises(ExportError, match="unknown export"):
        ai_exports.export_current("pdf", tmp_path / "x.pdf", session, folders)
