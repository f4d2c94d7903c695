"""A multi-label classifier with 14 findings (generated here): every finding with its own
probability, threshold, call and band, in the panel (real widgets), in CSV/JSON exports and
through ``radview analyze``, with Grad-CAM++ per finding."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests.inference.tiny_models import FINDINGS_14, make_multilabel, tiny_models_dir  # noqa: F401
from viewer.cli import analyze_main
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_types import AnalysisInput, AnalysisResult, confidence_band
from viewer.services.export import result_rows, write_csv, write_json

POSITIVES = 4


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ml") / "models"
    make_multilabel(folder, positives=POSITIVES)
    return folder


@pytest.fixture(scope="module")
def manifest(ml_dir: Path) -> dict[str, Any]:
    return json.loads((ml_dir / "chest14.json").read_text())


@pytest.fixture(scope="module")
def service(ml_dir: Path, tiny_models_dir: Path) -> AnalysisService:
    return AnalysisService(ModelRegistry([ml_dir, tiny_models_dir]), SessionPool(1))


def _image(rows: int = 90, cols: int = 110) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    return ((np.sin(xx / 6.0) + np.cos(yy / 9.0) + 2) * 60).astype(np.uint8)


@pytest.fixture(scope="module")
def result(service: AnalysisService) -> AnalysisResult:
    return service.analyse(AnalysisInput(display=_image(), image_id="img-ml", source="/x/ml.png"))


def test_every_finding_has_its_own_threshold_call_and_band(result: AnalysisResult,
                                                           manifest: dict[str, Any],
                                                           service: AnalysisService) -> None:
    res = result.result("chest14")
    assert res is not None and res.status == "ok" and res.multilabel
    assert [f.label for f in res.findings] == FINDINGS_14
    for f, declared in zip(res.findings, manifest["findings"]):
        assert f.threshold == declared["threshold"]
        assert f.positive == (f.probability >= f.threshold)
        bands = declared.get("bands", {"green": 0.9, "orange": 0.7})
        assert f.band == confidence_band(f.probability if f.positive else 1 - f.probability, bands)
    assert [f.positive for f in res.findings] == [i < POSITIVES for i in range(14)]
    # independent sigmoids, not a softmax: several findings near 1 at once
    assert sum(f.probability for f in res.findings) > 2
    # strict bands on finding 0 read lower than the default bands on finding 1 at similar p
    assert res.findings[0].band != "green" and res.findings[1].band == "green"
    top = max(res.findings, key=lambda f: f.probability)
    assert res.label == top.label and res.heatmap_label == top.label
    assert res.heatmap is not None and res.heatmap.shape == (90, 110)
    other = service.heatmap_for(res, "edema", (90, 110))
    assert other.shape == (90, 110) and not np.allclose(other, res.heatmap)
    share = res.measurement("heatmap_share", "lung_field")
    assert share is not None and share.source == "lungs" and 0 <= share.value <= 1


def test_the_panel_shows_a_row_per_finding(qtbot: Any, result: AnalysisResult,
                                           service: AnalysisService) -> None:
    from viewer.ui.results_panel import BAND_STYLE, CALL_STYLE, ResultsPanel, badge_call, suspicion

    panel = ResultsPanel()
    qtbot.addWidget(panel)
    manifests = {m.id: m for m in service.registry.available()}
    panel.set_result(result, manifests)
    heads = {panel.tree.topLevelItem(i).data(0, 0x0100): panel.tree.topLevelItem(i)
             for i in range(panel.tree.topLevelItemCount())}
    assert {"chest14", "pneumonia", "lungs"} <= set(heads)
    head = heads["chest14"]
    rows = {head.child(i).data(0, 0x0100): head.child(i) for i in range(head.childCount())}
    res = result.result("chest14")
    assert res is not None
    for f in res.findings:
        row = rows[f"chest14.finding.{f.label}"]
        assert row.text(0).strip() == f.label
        assert f"{100 * f.threshold:.0f}%" in row.text(1)  # its own threshold
        assert row.text(1).startswith(f.label if f.positive else f"no {f.label}")
        assert row.text(2) == f"{BAND_STYLE[f.band][0]} {BAND_STYLE[f.band][1]}"  # its own band
        call = "finding" if f.positive else "no finding"
        assert row.background(1).color() == CALL_STYLE[call]
    assert "(+3 more)" in head.text(1)
    assert "chest14.heatmap_share.lung_field" in rows  # its declared measurement
    lungs = heads["lungs"]
    texts = [lungs.child(i).text(0) for i in range(lungs.childCount())]
    assert any("lung (lung field)" in t for t in texts) and any("lung: area" in t for t in texts)
    assert badge_call(result) == "finding" and suspicion(result) > 0.99


def test_findings_are_exported_as_columns(tmp_path: Path, result: AnalysisResult) -> None:
    rows = result_rows(result)
    dest = write_csv(rows, tmp_path / "r.csv")
    with open(dest, newline="") as fh:
        by_model = {r["model_id"]: r for r in csv.DictReader(fh)}
    findings = json.loads(by_model["chest14"]["findings"])
    assert list(findings) == FINDINGS_14
    res = result.result("chest14")
    assert res is not None
    for f in res.findings:
        assert findings[f.label] == {"probability": round(f.probability, 6),
                                     "threshold": f.threshold, "call": f.call, "band": f.band}
    assert json.loads(by_model["pneumonia"]["findings"]) == {}
    doc = json.loads(write_json(rows, tmp_path / "r.json").read_text())
    ml = next(r for r in doc["results"] if r["model_id"] == "chest14")
    assert ml["findings"]["mass"]["call"] == "negative" and ml["findings"]["atelectasis"]["call"] == "positive"


def test_radview_analyze_writes_findings_and_a_heatmap_per_positive_finding(
        ml_dir: Path, tiny_models_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "in" / "film.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), _image())
    out = tmp_path / "out"
    rc = analyze_main([str(image), "--models-dir", str(ml_dir), "--models-dir", str(tiny_models_dir),
                       "--quiet", "--out", str(out / "r.csv"), "--heatmaps", str(out / "heat")])
    assert rc == 0
    with open(out / "r.csv", newline="") as fh:
        rows = {r["model_id"]: r for r in csv.DictReader(fh)}
    findings = json.loads(rows["chest14"]["findings"])
    assert [k for k, v in findings.items() if v["call"] == "positive"] == FINDINGS_14[:POSITIVES]
    names = sorted(p.name for p in (out / "heat").iterdir())
    assert names == sorted([f"film_chest14_{label}.png" for label in FINDINGS_14[:POSITIVES]]
                           + ["film_pneumonia.png"])
    maps = [cv2.imread(str(out / "heat" / f"film_chest14_{label}.png"))
            for label in FINDINGS_14[:2]]
    assert maps[0].shape == maps[1].shape and not np.array_equal(maps[0], maps[1])
