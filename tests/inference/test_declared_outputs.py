"""Declared outputs (manifest schema 2): segments, findings, measurements; schema-1 implied
declarations; precise errors for a user's manifest; shape checks against the ONNX graph."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.inference.tiny_models import export_onnx, make_lungs, make_multilabel, write_manifest
from viewer.inference.manifest import Code, Segment, load_manifest
from viewer.inference.registry import ModelRegistry, bundled_models_dir
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_types import AnalysisInput, AnalysisResult
from viewer.services.declared_exports import mask_file_name, segment_specs


class ThreeChannelNet(nn.Module):
    """A segmenter with 3 static output channels: background, a bright and a dark region."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 8 * x, -8 * x], dim=1)


def _segmenter(folder: Path, segments: list[dict[str, Any]], **extra: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    export_onnx(ThreeChannelNet(), folder / "regions.onnx", ["mask_logits"])
    return write_manifest(folder, "regions", {
        "schema": 2, "task": "segmentation", "labels": ["background", "bright", "dark"],
        "threshold": 0.5, "outputs": [{"name": "mask_logits", "kind": "segmentation_logits"}],
        "segments": segments, **extra})


BRIGHT = {"label": "bright", "channel": 1, "role": "region", "threshold": 0.5,
          "category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "39607008", "Lung"]}
DARK = {"label": "dark", "channel": 2, "role": "finding", "threshold": 0.9}


def _image() -> np.ndarray:
    img = np.full((40, 60), 128, np.uint8)
    img[:, :20] = 250  # bright: normalised > 0
    img[:, 40:] = 5  # dark: normalised < 0
    return img


def _reason(path: Path, edit: Any) -> str:
    raw = json.loads(path.read_text())
    edit(raw)
    bad = path.with_name("bad.json")
    bad.write_text(json.dumps(raw))
    entry = load_manifest(bad)
    assert not entry.available and entry.manifest is None
    return str(entry.reason)


def test_committed_manifests_declare_roles_codes_and_measurements() -> None:
    reg = ModelRegistry.default()
    lungs, covid, pneumonia = reg.get("lungs"), reg.get("covid"), reg.get("pneumonia")
    assert lungs is not None and covid is not None and pneumonia is not None
    assert lungs.schema == 2 and lungs.segments == (Segment(
        "lung", 1, "lung_field", 0.5, Code("SCT", "123037004", "Anatomical Structure"),
        Code("SCT", "39607008", "Lung")),)
    assert [d.key("lungs") for d in lungs.measurements] == ["lungs.area_fraction.lung"]
    for m in (covid, pneumonia):
        assert [d.key(m.id) for d in m.measurements] == [f"{m.id}.heatmap_share.lung_field"]
    gate = reg.gate()
    assert gate is not None and gate.schema == 2 and gate.measurements == () and gate.segments == ()


def test_schema_1_segmenter_is_one_region_segment_without_codes(tmp_path: Path) -> None:
    make_lungs(tmp_path)
    raw = json.loads((tmp_path / "lungs.json").read_text())
    raw.update(schema=1)
    for key in ("segments", "measurements"):
        raw.pop(key)
    (tmp_path / "lungs.json").write_text(json.dumps(raw))
    m = load_manifest(tmp_path / "lungs.json").manifest
    assert m is not None and m.segments == (Segment("lung", 1, "region", 0.5),)
    assert not m.segments[0].coded and m.measurements == ()
    # Analysed, it is a mask without codes: a DICOM SEG export says so, never invents a code.
    service = AnalysisService(ModelRegistry([tmp_path]), SessionPool(1))
    res = service.analyse(AnalysisInput(display=_image(), image_id="i", source="/x/i.png"))
    specs, notes = segment_specs(res, {"lungs": m})
    assert specs == [] and notes == [
        "lungs: segment 'lung' has no codes in its manifest (category and type): not exported as DICOM SEG"]


def test_several_segments_one_mask_each_at_its_own_threshold(tmp_path: Path) -> None:
    _segmenter(tmp_path, [BRIGHT, DARK], measurements=[
        {"kind": "area_fraction", "segment": "dark"},
        {"kind": "presence", "segment": "bright", "min_area_fraction": 0.2}])
    m = load_manifest(tmp_path / "regions.json").manifest
    assert m is not None
    service = AnalysisService(ModelRegistry([tmp_path]), SessionPool(1))
    result = service.analyse(AnalysisInput(display=_image(), image_id="i", source="/x/i.png"))
    res = result.result("regions")
    assert res is not None and res.status == "ok", res.reason
    bright, dark = res.overlays_of("mask")
    assert (bright.label, bright.role, dark.label, dark.role) == ("bright", "region", "dark", "finding")
    assert bright.array.shape == dark.array.shape == (40, 60)
    assert bright.array[:, :15].all() and not bright.array[:, 45:].any()
    assert dark.array[:, 45:].all() and not dark.array[:, :15].any()
    area = res.measurement("area_fraction", "dark")
    assert area is not None and area.key == "regions.area_fraction.dark"
    assert area.value == pytest.approx(dark.array.mean())
    presence = res.measurement("presence", "bright")
    assert presence is not None and presence.value == 1.0 and presence.as_value() is True
    assert res.as_row()["measurements"] == {"regions.area_fraction.dark": round(area.value, 4),
                                            "regions.presence.bright": True}
    # Only the coded segment goes to DICOM SEG; the other is named in a note.
    specs, notes = segment_specs(result, {"regions": m})
    assert [s.label for s in specs] == ["bright"] and specs[0].type.meaning == "Lung"
    assert notes and "'dark' has no codes" in notes[0]
    assert mask_file_name("film", res, "dark") == "film_regions_dark.png"


def test_a_channel_the_output_lacks_is_a_precise_error_at_run_time(tmp_path: Path) -> None:
    bad = dict(DARK, channel=3)
    _segmenter(tmp_path, [BRIGHT, bad])
    assert load_manifest(tmp_path / "regions.json").available  # the graph is checked when run
    service = AnalysisService(ModelRegistry([tmp_path]), SessionPool(1))
    res = service.analyse(AnalysisInput(display=_image(), image_id="i")).result("regions")
    assert res is not None and res.status == "error"
    assert res.reason == ("the model failed: segments[1].channel: expected an integer < 3 "
                          "(the output has 3 channels), got 3")


def test_findings_count_must_match_the_graph(tmp_path: Path) -> None:
    raw = make_multilabel(tmp_path)
    raw["findings"] = raw["findings"][:13]
    raw["gradcam"]["weight"] = raw["gradcam"]["weight"][:13]
    (tmp_path / "chest14.json").write_text(json.dumps(raw))
    service = AnalysisService(ModelRegistry([tmp_path]), SessionPool(1))
    res = service.analyse(AnalysisInput(display=_image(), image_id="i")).result("chest14")
    assert res is not None and res.status == "error"
    assert res.reason == ("the model failed: findings: the output 'logits' has 14 logits for 13 "
                          "declared findings")


@pytest.mark.parametrize("edit, reason", [
    (lambda r: r.update(measurements=[{"kind": "area_fraction", "segment": "lungz"}]),
     "measurements[0].segment: 'lungz' is not a declared segment (declared: 'bright', 'dark')"),
    (lambda r: r["segments"][1].update(role="lung"),
     "segments[1].role: expected one of lung_field, finding, anatomy, region, got 'lung'"),
    (lambda r: r["segments"][1].update(channel="2"),
     "segments[1].channel: expected an integer >= 0, got '2'"),
    (lambda r: r["segments"][0].update(category=["SCT", "123037004"]),
     "segments[0].category: expected [scheme, value, meaning] (three non-empty strings, e.g. "
     "[\"SCT\", \"39607008\", \"Lung\"]), got ['SCT', '123037004']"),
    (lambda r: r["segments"][1].update(type=["SCT", "36118008", "Pneumothorax"]),
     "segments[1].category: expected a code beside the type (both or neither)"),
    (lambda r: r["segments"][1].update(threshold=1.5),
     "segments[1].threshold: expected a number in [0, 1], got 1.5"),
    (lambda r: r["segments"].append(dict(r["segments"][0])),
     "segments[2].label: 'bright' is declared twice"),
    (lambda r: r.update(measurements=[{"kind": "heatmap_share", "role": "lung_field"}]),
     "measurements[0].kind: heatmap_share is for classifiers (a segmenter has no heatmap)"),
    (lambda r: r.update(measurements=[{"kind": "presence", "segment": "dark"}]),
     "measurements[0].min_area_fraction: expected a number in [0, 1], got None"),
    (lambda r: r.update(measurements=[{"kind": "volume", "segment": "dark"}]),
     "measurements[0].kind: expected one of area_fraction, presence, heatmap_share, got 'volume'"),
    (lambda r: r.update(schema=3), "schema: expected 1 or 2, got 3"),
    (lambda r: r.update(segments="lung"), "segments: expected a list, got str"),
    (lambda r: r.update(segments=[]), "segments: a segmentation model needs at least one segment"),
    (lambda r: r["outputs"].append({"name": "x", "kind": "probabilities"}),
     "outputs[1].kind: unknown output kind 'probabilities' (expected one of logits, "
     "multilabel_logits, activations, segmentation_logits, applicability)"),
])
def test_a_users_segmenter_manifest_errors_name_the_key(tmp_path: Path, edit: Any,
                                                        reason: str) -> None:
    path = _segmenter(tmp_path, [copy.deepcopy(BRIGHT), copy.deepcopy(DARK)])
    assert _reason(path, edit) == reason


@pytest.mark.parametrize("edit, reason", [
    (lambda r: r["findings"][2].update(threshold="high"),
     "findings[2].threshold: expected a number in [0, 1], got 'high'"),
    (lambda r: r["findings"][0].update(bands={"green": 0.5, "orange": 0.8}),
     "findings[0].bands: orange 0.8 is above green 0.5"),
    (lambda r: r["findings"][1].update(bands={"blue": 0.5}),
     "findings[1].bands.blue: unknown band (expected green or orange)"),
    (lambda r: r.update(positive_label="edema"),
     "positive_label: a multi-label classifier has one call per finding"),
    (lambda r: r.update(schema=1), "outputs: kind 'multilabel_logits' needs \"schema\": 2"),
    (lambda r: r.update(findings=[]), "findings: a multilabel_logits output needs at least one finding"),
    (lambda r: r["gradcam"].update(weight=r["gradcam"]["weight"][:3]),
     "gradcam.weight: expected one row per finding (14), got 3"),
    (lambda r: r.update(measurements=[{"kind": "heatmap_share", "role": "lungs"}]),
     "measurements[0].role: expected one of lung_field, finding, anatomy, region, got 'lungs'"),
    (lambda r: r.update(measurements=[{"kind": "area_fraction", "segment": "lung"}]),
     "measurements[0].kind: area_fraction is for segmenters"),
    (lambda r: r["findings"][13]["codes"].pop("type"),
     "findings[13].codes.type: expected a code beside the category (both or neither)"),
    (lambda r: r["findings"].__setitem__(4, 7), "findings[4]: expected an object, got 7"),
])
def test_a_users_multilabel_manifest_errors_name_the_key(tmp_path: Path, edit: Any,
                                                         reason: str) -> None:
    make_multilabel(tmp_path)
    assert _reason(tmp_path / "chest14.json", edit) == reason


def test_the_registry_lists_a_broken_user_manifest_and_keeps_the_rest(tmp_path: Path) -> None:
    path = _segmenter(tmp_path, [BRIGHT, DARK])
    raw = json.loads(path.read_text())
    raw["measurements"] = [{"kind": "area_fraction", "segment": "lungz"}]
    path.write_text(json.dumps(raw))
    reg = ModelRegistry([tmp_path, bundled_models_dir()])
    (bad,) = reg.unavailable()
    assert bad.id == "regions" and "'lungz' is not a declared segment" in str(bad.reason)
    assert {m.id for m in reg.available()} == {"body_region", "covid", "lungs", "pneumonia"}


def test_heatmap_share_names_no_segmenter_when_none_with_the_role_ran(tmp_path: Path) -> None:
    from tests.inference.tiny_models import make_classifier

    make_classifier(tmp_path)  # declares heatmap_share inside lung_field; no segmenter here
    service = AnalysisService(ModelRegistry([tmp_path]), SessionPool(1))
    result: AnalysisResult = service.analyse(AnalysisInput(display=_image(), image_id="i"))
    res = result.result("pneumonia")
    assert res is not None and res.heatmap is not None
    share = res.measurement("heatmap_share", "lung_field")
    assert share is not None and share.value is None and share.source is None
    assert share.note == "no segmenter with a lung_field segment ran on this image"
    assert res.as_row()["measurements"] == {"pneumonia.heatmap_share.lung_field": None}
