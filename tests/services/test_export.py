"""Exports: CSV/JSON rows, PNG with the notice, atomic writes, DICOM SEG/SC round-trips."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from collections.abc import Callable

import highdicom as hd
import numpy as np
import pydicom
import pytest

from tests.inference.tiny_models import tiny_models_dir  # noqa: F401
from viewer import RESEARCH_NOTICE
from viewer.dicom.export import write_heatmap_capture, write_lung_segmentation
from viewer.services.analysis_types import AnalysisResult, ModelResult
from viewer.services.export import (
    CSV_FIELDS, CsvResultWriter, ExportError, burn_notice, result_rows, write_csv, write_json,
    write_png,
)


def _result() -> AnalysisResult:
    clf = ModelResult("pneumonia", "1.2.0", "classification", "ok", label="normal",
                      probabilities={"normal": 0.7, "pneumonia": 0.3}, confidence=0.7,
                      band="orange", threshold=0.4, positive_label="pneumonia", forced=True)
    oos = ModelResult("covid", "1.0.0", "classification", "out_of_scope",
                      reason="not analysed: outside the model's intended input")
    return AnalysisResult("1.2.3.4", "/in/a.dcm", (10, 10), None, (clf, oos))


def test_rows_carry_version_threshold_probability_forced_notice() -> None:
    rows = result_rows(_result())
    assert [r["model_id"] for r in rows] == ["pneumonia", "covid"]
    r = rows[0]
    assert (r["model_version"], r["threshold"], r["positive_probability"], r["forced"]) == (
        "1.2.0", 0.4, 0.3, True)
    assert r["notice"] == RESEARCH_NOTICE and r["file"] == "/in/a.dcm"
    assert rows[1]["status"] == "out_of_scope" and rows[1]["probabilities"] == {}


def test_csv_round_trip(tmp_path: Path) -> None:
    dest = write_csv(result_rows(_result()), tmp_path / "out" / "r.csv")
    with open(dest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_FIELDS
    assert json.loads(rows[0]["probabilities"]) == {"normal": 0.7, "pneumonia": 0.3}
    assert rows[0]["forced"] == "True" and rows[0]["notice"] == RESEARCH_NOTICE
    assert list(tmp_path.joinpath("out").iterdir()) == [dest]  # no temporary left behind


def test_json_round_trip(tmp_path: Path) -> None:
    dest = write_json(result_rows(_result()), tmp_path / "r.json")
    doc = json.loads(dest.read_text())
    assert doc["notice"] == RESEARCH_NOTICE
    assert doc["results"][0]["probabilities"]["pneumonia"] == 0.3


def test_refuses_study_folders(tmp_path: Path) -> None:
    study = tmp_path / "study"
    (study / "series").mkdir(parents=True)
    for dest in (study / "r.csv", study / "series" / "r.csv"):
        with pytest.raises(ExportError):
            write_csv([], dest, study_folders=[study])
    assert list(study.rglob("*.csv")) == []
    write_csv([], tmp_path / "elsewhere.csv", study_folders=[study])


def test_failed_stream_leaves_no_file(tmp_path: Path) -> None:
    dest = tmp_path / "r.csv"
    dest.write_text("previous export\n")
    with pytest.raises(RuntimeError):
        with CsvResultWriter(dest) as writer:
            writer.write_result(_result())
            raise RuntimeError("cancelled half way")
    assert dest.read_text() == "previous export\n"  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]


def test_png_as_seen_has_the_notice_burnt_in(tmp_path: Path) -> None:
    import cv2

    rgb = np.full((300, 400, 3), 200, np.uint8)
    burnt = burn_notice(rgb)
    # the notice is a strip added below the image: every image pixel is kept (issue 16)
    assert burnt.shape[1:] == rgb.shape[1:] and burnt.shape[0] > rgb.shape[0]
    assert np.array_equal(burnt[:300], rgb)
    assert burnt[300:].max() >= 240  # near-white text (anti-aliased glyphs peak at 248-255)
    dest = write_png(rgb, tmp_path / "view.png")
    back = cv2.cvtColor(cv2.imread(str(dest)), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(back, burnt)
    with pytest.raises(ValueError):
        burn_notice(np.zeros((10, 10), np.uint8))


@pytest.fixture
def source(make_dicom: Callable[..., Path]) -> pydicom.Dataset:
    pixels = (np.arange(60 * 80, dtype=np.uint16).reshape(60, 80) % 4096).astype(np.uint16)
    path = make_dicom("src.dcm", pixels, bits_stored=12, ImagerPixelSpacing=[0.15, 0.15])
    return pydicom.dcmread(path)


def _mask(shape: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[10:40, 5:30] = 1
    m[15:45, 45:70] = 1
    return m


def test_segmentation_round_trip(source: pydicom.Dataset, tmp_path: Path) -> None:
    mask = _mask((60, 80))
    dest = write_lung_segmentation(source, mask, tmp_path / "seg.dcm",
                                   algorithm_name="lungs", algorithm_version="1.0.0")
    seg = hd.seg.segread(dest)
    assert seg.SegmentationType == "BINARY"
    px = seg.get_pixels_by_source_instance([source.SOPInstanceUID], segment_numbers=[1])
    np.testing.assert_array_equal(px[0, :, :, 0], mask)
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    desc = seg.SegmentSequence[0]
    assert desc.SegmentAlgorithmName == "lungs" and desc.SegmentLabel == "Lung"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.dcm", "src.dcm"]  # no temporaries
    with pytest.raises(ValueError):
        write_lung_segmentation(source, mask[:10], tmp_path / "bad.dcm",
                                algorithm_name="lungs", algorithm_version="1")


def test_segmentation_of_a_real_radiograph(shared_dicom: Path, tmp_path: Path) -> None:
    src = pydicom.dcmread(shared_dicom / "RG2_RLE.dcm")
    mask = _mask((int(src.Rows), int(src.Columns)))
    seg = hd.seg.segread(write_lung_segmentation(src, mask, tmp_path / "s.dcm",
                                                 algorithm_name="lungs", algorithm_version="1"))
    px = seg.get_pixels_by_source_instance([src.SOPInstanceUID], segment_numbers=[1])
    np.testing.assert_array_equal(px[0, :, :, 0], mask)


def test_secondary_capture_references_the_source(source: pydicom.Dataset, tmp_path: Path) -> None:
    rgb = np.zeros((60, 80, 3), np.uint8)
    rgb[..., 0] = np.arange(80, dtype=np.uint8)
    dest = write_heatmap_capture(source, rgb, tmp_path / "sc.dcm", description="Grad-CAM++ x 1.0")
    sc = pydicom.dcmread(dest)
    assert sc.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.PatientID == source.PatientID
    assert sc.SeriesInstanceUID != source.SeriesInstanceUID
    assert "Research use only" in sc.SeriesDescription
    np.testing.assert_array_equal(sc.pixel_array, rgb)


def test_cells_are_neutralised_for_spreadsheets_and_terminals(tmp_path: Path) -> None:
    """Issue 15: the OWASP rule (no cell starts a formula) and escaped control characters,
    in CSV and JSON alike; names that are not valid UTF-8 do not stop the export."""
    from viewer.services.export import write_json

    rows = [{"file": "/data/=HYPERLINK(\"http://x\")/a.dcm", "image_id": "=HYPERLINK(\"http://x\",\"y\")",
             "model_id": "@sum", "status": "error", "reason": "bad\x1b[31m red\nnext line\x00",
             "probabilities": {"+cmd": -0.25}, "label": "-2+3", "confidence": -0.5},
            {"file": "/data/\udcff\udcfe-latin1.dcm", "image_id": "1.2.3", "model_id": "m",
             "status": "ok", "probabilities": {}}]
    out = write_csv(rows, tmp_path / "r.csv")
    got = list(csv.DictReader(out.open(encoding="utf-8")))
    assert got[0]["image_id"].startswith("'=") and got[0]["model_id"] == "'@sum"
    assert got[0]["label"] == "'-2+3" and got[0]["confidence"] == "-0.5"  # numbers stay numbers
    assert got[0]["reason"] == "bad\\x1b[31m red\\x0anext line\\x00"
    assert "'+cmd" in got[0]["probabilities"]
    assert got[1]["file"] == "/data/\\xff\\xfe-latin1.dcm"
    for row in got:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or cell.lstrip("-").replace(".", "").isdigit()
            assert not any(ord(c) < 0x20 for c in cell)
    doc = json.loads(write_json(rows, tmp_path / "r.json").read_text(encoding="utf-8"))
    first = doc["results"][0]
    assert first["image_id"].startswith("'=") and first["reason"].startswith("bad\\x1b")
    assert first["probabilities"] == {"'+cmd": -0.25}
    assert doc["results"][1]["file"] == "/data/\\xff\\xfe-latin1.dcm"


def test_analyze_writes_a_csv_for_a_file_name_that_is_not_utf8(tmp_path: Path, tiny_models_dir: Path) -> None:
    import os

    import cv2

    from viewer.cli import analyze_main

    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"chest-\xff\xfe.png")  # a Latin-1 name on a UTF-8 system
    cv2.imwrite(str(folder / "ok.png"), np.full((64, 64), 90, np.uint8))
    os.replace(folder / "ok.png", folder / name)
    out = tmp_path / "out" / "r.csv"
    assert analyze_main([str(folder), "--models-dir", str(tiny_models_dir), "--out", str(out),
                         "--quiet"]) == 0
    files = {r["file"] for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert files == {str(folder) + "/chest-\\xff\\xfe.png"}


def test_json_export_carries_provenance(tmp_path: Path, tiny_models_dir: Path) -> None:
    """Issue 16: exports carry provenance (radview version, time, model versions and hashes)."""
    from viewer import __version__
    from viewer.inference.registry import ModelRegistry
    from viewer.services.export import provenance, write_json

    models = ModelRegistry([tiny_models_dir]).available()
    doc = json.loads(write_json([{"file": "a", "model_id": "pneumonia"}], tmp_path / "r.json",
                                source=provenance(models)).read_text())
    prov = doc["provenance"]
    assert prov["radview"] == __version__ and prov["created"].endswith("+00:00")
    sha = json.loads((tiny_models_dir / "pneumonia.json").read_text())["sha256"]
    assert prov["models"]["pneumonia"] == {"version": "0.0.1-test", "sha256": sha}


def test_dicom_exports_name_radview_and_the_model(tmp_path: Path, make_dicom: Callable[..., Path]) -> None:
    from viewer import __version__
    from viewer.dicom.export import write_heatmap_capture, write_lung_segmentation

    src = pydicom.dcmread(make_dicom("src.dcm", np.zeros((32, 24), np.uint16), bits_stored=12))
    mask = np.zeros((32, 24), np.uint8)
    mask[4:20, 4:12] = 1
    seg = pydicom.dcmread(write_lung_segmentation(src, mask, tmp_path / "seg.dcm",
                                                  algorithm_name="lungs", algorithm_version="2.0.0"))
    sc = pydicom.dcmread(write_heatmap_capture(src, np.zeros((40, 24, 3), np.uint8), tmp_path / "sc.dcm",
                                               description="Grad-CAM++ covid 3.0.0"))
    assert list(seg.SoftwareVersions) == [f"radview {__version__}", "lungs 2.0.0"]
    assert list(sc.SoftwareVersions) == [f"radview {__version__}", "Grad-CAM++ covid 3.0.0"]
    assert sc.BurnedInAnnotation == "YES"
