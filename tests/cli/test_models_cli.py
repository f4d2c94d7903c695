"""``radview models add | check | list`` end to end: a plain PyTorch classifier exported to ONNX
becomes a working model with Grad-CAM++ in one command, and runs on a real DICOM file (read in
place from ../shared/data) and a generated PNG through the analysis service."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch

from tests.inference.test_model_add import FlatNet, GapNet, SegNet, export
from viewer.core.preprocess import prepare_input
from viewer.inference.gradcam import cam_to_image, gradcam_plusplus
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_inputs import input_from_record
from viewer.services.library import scan_paths
from viewer.services.models_cli import models_main

REPO = Path(__file__).resolve().parents[2]
LUNG = {"category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "39607008", "Lung"]}


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user models folder of these tests (never the real per-user folder)."""
    folder = tmp_path / "user-models"
    monkeypatch.setenv("RADVIEW_MODELS_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[GapNet, Path]:
    torch.manual_seed(11)
    model = GapNet(n=2)
    return model, export(model, tmp_path_factory.mktemp("export") / "my_classifier.onnx")


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    yy, xx = np.mgrid[0:300, 0:260]
    img = (127 + 100 * np.sin(xx / 17.0) * np.cos(yy / 23.0)).astype(np.uint8)
    path = tmp_path_factory.mktemp("png") / "sample.png"
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="module")
def dicom() -> Path:
    path = (REPO / ".." / "shared" / "data" / "dicom" / "RG1_JLSN.dcm").resolve()
    if not path.is_file():
        pytest.skip(f"shared data not found: {path}")
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_add_then_check_end_to_end(classifier: tuple[GapNet, Path], user_dir: Path, dicom: Path,
                                   png: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, source = classifier
    before = _sha(source)
    rc = models_main(["add", str(source), "--task", "classification", "--labels", "normal,effusion",
                      "--id", "effusion", "--name", "My effusion classifier", "--threshold", "0.4",
                      "--mean", "0.45", "--std", "0.22"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "added model effusion 1.0.0" in out and "Grad-CAM++ wired" in out
    assert "the threshold applies to P(effusion)" in out
    assert _sha(source) == before
    # The registry (user folder first, then the bundled models) finds it, usable.
    registry = ModelRegistry.default([user_dir])
    manifest = registry.get("effusion")
    assert manifest is not None and manifest.gradcam_weight is not None
    assert manifest.onnx_path.parent == user_dir and manifest.positive_label == "effusion"
    rc = models_main(["check", "effusion", str(dicom), str(png)])
    out = capsys.readouterr().out
    assert rc == 0, out
    blocks = out.split("\n\n")
    by_file = {b.splitlines()[0].split(" (")[0]: b for b in blocks[1:] if b.strip()}
    for name in (dicom.name, png.name):
        block = by_file[name]
        assert "status: ok" in block, block
        assert "call: " in block and "P(effusion)" in block and "threshold 40.0%" in block
        assert "band " in block and "Grad-CAM++: yes, for" in block
    assert "2 of 2 image(s) analysed" in out
    # What `check` ran is the service's path: its heatmap is the Grad-CAM++ of the torch
    # model's own activations and head weights on the same preprocessed input.
    record = next(r for r in scan_paths([str(png)], workers=1).index.records() if r.is_image)
    inp = input_from_record(record)
    res = AnalysisService(registry, SessionPool(1)).analyse(inp, models={"effusion"}).result("effusion")
    assert res is not None and res.heatmap is not None
    x = prepare_input(inp.display, manifest.input_spec)
    with torch.no_grad():
        acts = model.features(torch.from_numpy(x)).numpy()[0]
        probs = torch.softmax(model(torch.from_numpy(x)), 1).numpy()[0]
    np.testing.assert_allclose([res.probabilities["normal"], res.probabilities["effusion"]], probs,
                               atol=1e-5)
    target = manifest.labels.index(res.heatmap_label or "")
    ref = cam_to_image(gradcam_plusplus(acts, model.fc.weight.detach().numpy(), target),
                       inp.display.shape[:2], (64, 64))
    np.testing.assert_allclose(res.heatmap, ref, atol=1e-5)


def test_check_on_a_segmenter_prints_its_measurements(user_dir: Path, png: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(3)
    src = export(SegNet(1), tmp_path / "ptx.onnx")
    assert models_main(["add", str(src), "--task", "segmentation", "--labels", "pneumothorax",
                        "--role", "finding", "--id", "ptx"]) == 0
    assert "no codes: no DICOM SEG" in capsys.readouterr().out
    assert models_main(["check", "ptx", str(png)]) == 0
    out = capsys.readouterr().out
    assert "status: ok" in out and "ptx.area_fraction.pneumothorax: " in out


def test_check_on_a_multilabel_classifier_prints_every_finding(
        user_dir: Path, png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(4)
    src = export(GapNet(n=14), tmp_path / "cxr14.onnx")
    labels = [f"f{i:02d}" for i in range(14)]
    assert models_main(["add", str(src), "--task", "multilabel", "--labels", ",".join(labels),
                        "--id", "cxr14", "--threshold", "0.45"]) == 0
    capsys.readouterr()
    assert models_main(["check", "cxr14", str(png)]) == 0
    out = capsys.readouterr().out
    lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("finding ")]
    assert [ln.split(":")[0] for ln in lines] == [f"finding {lab}" for lab in labels]
    assert all("threshold 45.0%" in ln and ("positive" in ln or "negative" in ln) for ln in lines)


def test_non_gap_head_is_added_and_the_reason_printed(user_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    src = export(FlatNet(), tmp_path / "flat.onnx")
    assert models_main(["add", str(src), "--task", "classification", "--labels", "a,b"]) == 0
    out = capsys.readouterr().out
    assert ("no Grad-CAM++: the logits are not a linear function of a global average pool: "
            "found Flatten after Relu") in out
    assert ModelRegistry([user_dir]).get("flat") is not None


def test_add_errors_exit_1_with_the_option_named(classifier: tuple[GapNet, Path], user_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rc = models_main(["add", str(classifier[1]), "--task", "classification", "--labels", "a,b,c"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "radview models add: --labels: the output logits (1, 2) float32 has 2 classes, got 3 labels" in err
    assert models_main(["add", str(classifier[1]), "--task", "classification", "--labels", "a,b",
                        "--id", "twice"]) == 0
    capsys.readouterr()
    assert models_main(["add", str(classifier[1]), "--task", "classification", "--labels", "a,b",
                        "--id", "twice"]) == 1
    assert "already in" in capsys.readouterr().err
    assert models_main(["add", str(classifier[1]), "--task", "detection", "--labels", "a,b"]) == 2


def test_check_exit_codes(user_dir: Path, classifier: tuple[GapNet, Path], png: Path, tmp_path: Path,
                          make_dicom: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert models_main(["check", "no-such-model", str(png)]) == 2
    assert "no model 'no-such-model' (models found: " in capsys.readouterr().err
    assert models_main(["add", str(classifier[1]), "--task", "classification", "--labels", "a,b",
                        "--id", "spoilt"]) == 0
    onnx_copy = user_dir / "spoilt.onnx"
    onnx_copy.write_bytes(onnx_copy.read_bytes() + b"\0")  # the checksum no longer matches
    capsys.readouterr()
    assert models_main(["check", "spoilt", str(png)]) == 1
    assert "model 'spoilt' is unavailable: checksum of spoilt.onnx" in capsys.readouterr().err
    assert models_main(["list"]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("spoilt "))
    assert str(user_dir) in row and "unavailable: checksum" in row
    assert any(ln.startswith("covid ") and "available" in ln for ln in out.splitlines())
    # Every file fails: exit 1.
    assert models_main(["add", str(classifier[1]), "--task", "classification", "--labels", "a,b",
                        "--id", "good"]) == 0
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    capsys.readouterr()
    assert models_main(["check", "good", str(broken)]) == 1
    assert "no image could be read" in capsys.readouterr().err
    assert models_main(["check", "good", str(tmp_path / "absent.dcm")]) == 1
    cut = make_dicom("cut.dcm", np.full((128, 128), 900, np.uint16))
    cut.write_bytes(cut.read_bytes()[:-20000])  # the header scans, the pixels do not decode
    capsys.readouterr()
    assert models_main(["check", "good", str(cut)]) == 1
    assert "cut.dcm\n  error: " in capsys.readouterr().out
    assert models_main(["check", "good", str(cut), str(png)]) == 0  # one file analysed
    empty = tmp_path / "empty"
    empty.mkdir()
    assert models_main(["check", "good", str(empty)]) == 2  # nothing to analyse: usage


def test_onnx_missing_add_says_so_and_list_still_works(
        user_dir: Path, classifier: tuple[GapNet, Path], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    assert models_main(["add", str(classifier[1]), "--task", "classification", "--labels", "a,b"]) == 1
    assert "needs the onnx package (pip install onnx)" in capsys.readouterr().err
    assert models_main(["list"]) == 0
    assert "body_region" in capsys.readouterr().out


def test_subprocess_add_list_and_analyze(classifier: tuple[GapNet, Path], tmp_path: Path,
                                         png: Path) -> None:
    """Once through ``python -m viewer``: add, list, and `radview analyze` finds the user model."""
    env = {**os.environ, "RADVIEW_MODELS_DIR": str(tmp_path / "um"), "QT_QPA_PLATFORM": "offscreen"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "viewer", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)

    added = run("models", "add", str(classifier[1]), "--task", "classification", "--labels",
                "normal,effusion", "--id", "subproc")
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "um" / "subproc.json").is_file()
    listed = run("models", "list")
    assert listed.returncode == 0 and any(
        ln.startswith("subproc ") and ln.rstrip().endswith("available") for ln in listed.stdout.splitlines())
    analysed = run("analyze", str(png), "--models", "subproc", "--out", str(tmp_path / "r.json"),
                   "--quiet")
    assert analysed.returncode == 0, analysed.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    rows = data["results"]
    assert [r["model_id"] for r in rows] == ["subproc"] and rows[0]["status"] == "ok"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert models_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "{add,check,list}" in out and "Research use only" in out
    assert models_main(["add", "--help"]) == 0
    assert "--input-size H W" in capsys.readouterr().out

