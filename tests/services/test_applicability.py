"""A model's own "outside this model's data" check (issue 14): declared in the manifest,
computed by the graph, and when it fires the result is not a finding: a distinct status and
reason in the result, the CSV and the badge; "Run anyway" still gives a result, marked."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.inference.tiny_models import make_applicable_classifier, make_gate, make_lungs
from viewer.inference.manifest import load_manifest
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_types import AnalysisInput
from viewer.services.export import result_rows, write_csv


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("applicable")
    make_gate(out, "chest")
    make_applicable_classifier(out)
    make_lungs(out)
    return out


def _input(level: int) -> AnalysisInput:
    img = np.full((96, 80), level, np.uint8)
    img[30:60, 20:50] = max(0, level - 40)
    return AnalysisInput(image_id="img", source="x.png", display=img)


def test_bright_image_is_outside_the_models_data(folder: Path, tmp_path: Path) -> None:
    service = AnalysisService(ModelRegistry([folder]), SessionPool(1))
    dark, bright = service.analyse(_input(40)), service.analyse(_input(220))
    assert dark.result("pneumonia").status == "ok" and dark.result("pneumonia").label
    out = bright.result("pneumonia")
    assert out.status == "outside_data" and out.label is None and out.probabilities == {}
    assert out.heatmap is None and out.confidence is None
    assert "outside this model's data" in out.reason and "applicability score" in out.reason
    assert bright.result("lungs").status == "ok"  # a model without the check is unaffected
    forced = service.analyse(_input(220), force=True).result("pneumonia")
    assert forced.status == "ok" and forced.forced and forced.label is not None
    assert "run anyway" in forced.caution and "applicability score" in forced.caution
    rows = list(csv.DictReader(write_csv(result_rows(bright), tmp_path / "r.csv").open()))
    row = next(r for r in rows if r["model_id"] == "pneumonia")
    assert row["status"] == "outside_data" and row["label"] == "" and row["confidence"] == ""


def test_manifest_declares_the_check(folder: Path, tmp_path: Path) -> None:
    m = load_manifest(folder / "pneumonia.json").manifest
    assert m is not None and m.applicability is not None
    assert m.applicability.threshold == 0.0 and m.applicability.rates["validation_refused"] == 0.03
    for bad, words in (({"output": "logits", "threshold": 1}, "not an output of kind"),
                       ({"output": "applicability", "threshold": "x"}, "must be a number"),
                       ({"output": "applicability", "threshold": float("inf")}, "finite"),
                       ("yes", "must be an object")):
        doc = json.loads((folder / "pneumonia.json").read_text())
        doc["applicability"] = bad
        target = tmp_path / "m"
        target.mkdir(exist_ok=True)
        (target / "pneumonia.onnx").write_bytes((folder / "pneumonia.onnx").read_bytes())
        (target / "pneumonia.json").write_text(json.dumps(doc))
        entry = load_manifest(target / "pneumonia.json")
        assert entry.manifest is None and words in (entry.reason or ""), bad


def test_badge_and_panel_do_not_show_a_finding(folder: Path, qtbot: object) -> None:
    from viewer.ui.results_panel import badge_text, suspicion

    service = AnalysisService(ModelRegistry([folder]), SessionPool(1))
    bright = service.analyse(_input(220), models={"pneumonia"})
    text, colour = badge_text(bright)
    assert "outside" in text and colour is None
    assert suspicion(bright) == -1.0  # sorted after every image with a finding
