"""``radview analyze`` end to end on real files (read in place from ../shared/data)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable

import cv2
import numpy as np
import pydicom
import pytest

from tests.inference.tiny_models import tiny_models_dir  # noqa: F401
from viewer.cli import analyze_main

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    data = (REPO / ".." / "shared" / "data").resolve()
    files = [data / "dicom" / "RG2_RLE.dcm", data / "dicom" / "jpeg-baseline.dcm",
             data / "pneumonia" / "originals" / "NORMAL" / "IM-0117-0001.jpeg",
             data / "pneumonia" / "originals" / "NORMAL" / "IM-0129-0001.jpeg"]
    missing = [f for f in files if not f.is_file()]
    if missing:
        pytest.skip(f"shared data not found: {missing[0]}")
    return files


def _size(path: Path) -> tuple[int, int]:
    if path.suffix == ".dcm":
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_tiny_models_csv_masks_heatmaps(inputs: list[Path], tiny_models_dir: Path,
                                        tmp_path: Path) -> None:
    out = tmp_path / "res.csv"
    rc = analyze_main([*map(str, inputs), "--models-dir", str(tiny_models_dir),
                       "--models", "pneumonia,lungs", "--out", str(out),
                       "--masks", str(tmp_path / "masks"), "--heatmaps", str(tmp_path / "heat"),
                       "--quiet"])
    assert rc == 0
    rows = _rows(out)
    assert len(rows) == 4 * 3
    for key in ("file", "model_id", "model_version", "status", "label", "confidence", "band",
                "probabilities"):
        assert key in rows[0]
    by = {(Path(r["file"]).name, r["model_id"]): r for r in rows}
    clf = by[("IM-0117-0001.jpeg", "pneumonia")]
    probs = json.loads(clf["probabilities"])
    assert set(probs) == {"normal", "pneumonia"} and sum(probs.values()) == pytest.approx(1, abs=1e-5)
    assert clf["status"] == "ok" and clf["model_version"] == "0.0.1-test"
    assert clf["band"] in ("green", "orange", "red") and float(clf["confidence"]) >= 0.5
    for f in inputs:
        mask = cv2.imread(str(tmp_path / "masks" / f"{f.stem}_lungs.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == _size(f) and set(np.unique(mask)) <= {0, 255}
        heat = cv2.imread(str(tmp_path / "heat" / f"{f.stem}_pneumonia.png"))
        rows, cols = _size(f)  # the image, then the research notice strip below it
        assert heat.shape[1] == cols and heat.shape[0] > rows


def test_json_output_and_force(inputs: list[Path], tiny_models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.json"
    rc = analyze_main([str(inputs[2]), "--models-dir", str(tiny_models_dir), "--models",
                       "pneumonia", "--out", str(out), "--force", "--quiet"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert "Research use only" in doc["notice"]
    rows = {r["model_id"]: r for r in doc["results"]}
    assert set(rows) == {"body_region", "pneumonia"}
    assert rows["pneumonia"]["forced"] is False  # the gate said chest: nothing to force


def test_usage_errors_exit_2(inputs: list[Path], tiny_models_dir: Path, tmp_path: Path) -> None:
    assert analyze_main([]) == 2
    assert analyze_main([str(inputs[2]), "--models-dir", str(tiny_models_dir),
                         "--models", "no_such_model"]) == 2
    assert analyze_main([str(tmp_path / "empty-folder-that-does-not-exist"),
                         "--models-dir", str(tiny_models_dir), "--quiet"]) == 2
    study = tmp_path / "study"
    study.mkdir()
    (study / "a.jpeg").write_bytes(inputs[2].read_bytes())
    assert analyze_main([str(study), "--models-dir", str(tiny_models_dir),
                         "--out", str(study / "r.csv")]) == 2
    assert not (study / "r.csv").exists()
    # A single file's folder is a study folder too.
    assert analyze_main([str(study / "a.jpeg"), "--models-dir", str(tiny_models_dir),
                         "--out", str(study / "sub" / "r.csv")]) == 2


def test_unreadable_file_is_an_error_row_and_exit_1(
        inputs: list[Path], tiny_models_dir: Path, tmp_path: Path,
        make_dicom: Callable[..., Path]) -> None:
    made = make_dicom("truncated.dcm", np.zeros((64, 64), np.uint16))
    (tmp_path / "study").mkdir()
    bad = tmp_path / "study" / made.name
    data = made.read_bytes()
    bad.write_bytes(data[: len(data) - 4000])  # pixel data cut short
    made.unlink()
    out = tmp_path / "r.csv"
    rc = analyze_main([str(bad), str(inputs[2]), "--models-dir", str(tiny_models_dir),
                       "--models", "pneumonia", "--out", str(out), "--quiet"])
    assert rc == 1
    rows = _rows(out)
    err = [r for r in rows if r["status"] == "error"]
    assert len(err) == 1 and Path(err[0]["file"]).name == "truncated.dcm" and err[0]["reason"]
    assert any(r["status"] == "ok" and r["model_id"] == "pneumonia" for r in rows)


def test_headless_without_qt_and_csv_on_stdout(inputs: list[Path], tiny_models_dir: Path) -> None:
    code = (
        "import sys\n"
        "from viewer.__main__ import main\n"
        f"rc = main(['analyze', {str(inputs[3])!r}, '--models-dir', {str(tiny_models_dir)!r},"
        " '--models', 'pneumonia'])\n"
        "assert not [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'torch'))]\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(proc.stdout.splitlines()))
    assert [r["model_id"] for r in rows] == ["body_region", "pneumonia"]
    assert "[1/1]" in proc.stderr  # progress goes to stderr


@pytest.mark.skipif(not any(MODELS.glob("*.json")), reason="no committed models in models/ yet")
def test_committed_models(inputs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    rc = analyze_main([*map(str, inputs), "--out", str(out), "--quiet",
                       "--masks", str(tmp_path / "m")])
    assert rc == 0
    rows = _rows(out)
    assert rows and all(r["status"] in ("ok", "out_of_scope", "outside_data") for r in rows)
    gate_id = next(json.loads(p.read_text())["id"] for p in MODELS.glob("*.json")
                   if json.loads(p.read_text()).get("gate"))
    gate = {Path(r["file"]).name: r for r in rows if r["model_id"] == gate_id}
    assert gate["IM-0117-0001.jpeg"]["label"] == "chest"
    assert gate["jpeg-baseline.dcm"]["label"] != "chest"  # a canine radiograph
    dog = [r for r in rows if Path(r["file"]).name == "jpeg-baseline.dcm"
           and r["model_id"] != gate_id]
    assert all(r["status"] == "out_of_scope" for r in dog)
    chest = {r["model_id"]: r for r in rows if Path(r["file"]).name == "IM-0117-0001.jpeg"
             and r["model_id"] != gate_id}
    # A child's chest film (Kermany original): the paediatric pneumonia model and the lungs
    # answer; the adult covid model either answers or says the film is outside its data (its
    # own check refuses most children's films), never out of scope.
    assert chest["pneumonia"]["status"] == "ok" and chest["lungs"]["status"] == "ok"
    assert chest["covid"]["status"] in ("ok", "outside_data")


def test_committed_gate_refuses_colour_photographs_from_files(tmp_path: Path) -> None:
    skdata = pytest.importorskip("skimage.data")
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "rocket.png"), np.ascontiguousarray(skdata.rocket()[..., ::-1]))
    cv2.imwrite(str(folder / "ihc.jpg"), np.ascontiguousarray(skdata.immunohistochemistry()[..., ::-1]))
    out = tmp_path / "r.csv"
    assert analyze_main([str(folder), "--out", str(out), "--quiet"]) == 0
    rows = _rows(out)
    gate = [r for r in rows if r["model_id"] == "body_region"]
    assert len(gate) == 2
    assert all(r["label"] == "unknown" and "colour image" in r["reason"] for r in gate)
    assert all(r["status"] == "out_of_scope" for r in rows if r["model_id"] != "body_region")
