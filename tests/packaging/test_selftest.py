"""The self-test from source: its classification of files and its exit status (no build).

Files are generated here (real pydicom encoders); models are the tiny exported ONNX models of
tests/inference; the bundle itself is tested in test_bundle.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from pydicom import uid
from pydicom.encaps import encapsulate

from tests import dicom_factory
from viewer.selftest import selftest_main
from viewer.selftest.dicom_checks import GPL_NOTE, check_codecs, check_files, make_fixtures
from viewer.selftest.report import Report


def _report() -> Report:
    return Report(io.StringIO())


def _jpeg_extended_12bit(path: Path) -> Path:
    """A 12-bit JPEG Extended file: only the GPL pylibjpeg-libjpeg would decode it."""
    path = dicom_factory.write_dicom(path, np.zeros((8, 8), dtype=np.uint16), bits_stored=12)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = uid.JPEGExtended12Bit
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc1" + b"\x00" * 60 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    return path


def test_codecs_are_all_present_from_source() -> None:
    report = _report()
    check_codecs(report)
    assert report.count("codec", "fail") == 0
    assert report.count("codec", "ok") >= 7


def test_files_are_classified_ok_expected_broken_and_fail(tmp_path: Path) -> None:
    folder = make_fixtures(tmp_path / "studies")  # uncompressed, RLE, JPEG-LS, JPEG 2000
    try:
        import libjpeg  # noqa: F401
        gpl_installed = True
    except ImportError:
        gpl_installed = False
    _jpeg_extended_12bit(folder / "jpeg-extended-12bit.dcm")
    good = dicom_factory.write_dicom(tmp_path / "good.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    (folder / "truncated.dcm").write_bytes(good.read_bytes()[:-40])  # pixel data cut short
    (folder / "broken").mkdir()
    (folder / "broken" / "garbage.dcm").write_bytes(b"DICM" * 10)

    report = _report()
    images = check_files(report, folder)
    status = {i.name.split(" [")[0]: i.status for i in report.items if i.section in ("dicom", "broken")}
    for name in ("selftest-uncompressed.dcm", "selftest-rle.dcm", "selftest-jpegls.dcm", "selftest-j2k.dcm"):
        assert status[name] == "ok", name
    assert status["truncated.dcm"] == "fail"
    assert status["garbage.dcm"] == "expected"
    if not gpl_installed:
        assert status["jpeg-extended-12bit.dcm"] == "expected"
        assert any(i.detail == GPL_NOTE for i in report.items)
    assert sorted(i.name for i in images) == [
        "selftest-j2k.dcm", "selftest-jpegls.dcm", "selftest-rle.dcm", "selftest-uncompressed.dcm"]
    assert all(i.display.dtype == np.uint8 and i.display.shape == (256, 256) for i in images)


@pytest.mark.slow
def test_selftest_passes_with_models_and_writes_screenshot(tmp_path: Path, qapp) -> None:
    pytest.importorskip("torch")
    from tests.inference.tiny_models import make_model_set

    models = make_model_set(tmp_path / "models")
    out = tmp_path / "out"
    code = selftest_main(["--self-test", "--models", str(models), "--out", str(out)])
    data = json.loads((out / "report.json").read_text())
    failures = [i for i in data["items"] if i["status"] == "fail"]
    assert code == 0 and data["result"] == "pass", failures
    ran = {i["name"].split()[0] for i in data["items"] if i["section"] == "model" and i["status"] == "ok"}
    repo_models = {p.stem for p in (Path(__file__).resolve().parents[2] / "models").glob("*.json")}
    assert ran == {"body_region", "pneumonia", "lungs"} | repo_models  # repo models shadow tiny ones
    assert any(i["section"] == "gradcam" and i["status"] == "ok" for i in data["items"])
    assert (out / "selftest-screenshot.png").stat().st_size > 10_000
    assert any(i["name"] == "provider" and "CPUExecutionProvider" in i["detail"] for i in data["items"])


def test_selftest_fails_on_a_model_whose_checksum_is_wrong(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "bad.onnx").write_bytes(b"not really onnx")
    (models / "bad.json").write_text(json.dumps({
        "schema": 1, "id": "bad", "version": "1", "name": "bad", "task": "classification",
        "file": "bad.onnx", "sha256": "0" * 64, "labels": ["a", "b"],
        "input": {"name": "input", "size": [8, 8], "channels": 1, "mean": 0.5, "std": 0.25},
        "outputs": [{"name": "logits", "kind": "logits"}], "threshold": 0.5,
        "bands": {"green": 0.9, "orange": 0.7}}))
    out = tmp_path / "out"
    code = selftest_main(["--self-test", "--models", str(models), "--no-gui", "--out", str(out)])
    data = json.loads((out / "report.json").read_text())
    assert code == 1 and data["result"] == "fail"
    assert any(i["section"] == "model" and i["name"] == "bad" and i["status"] == "fail" for i in data["items"])


def test_selftest_reports_a_missing_folder_as_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = selftest_main(["--self-test", str(tmp_path / "nowhere"), "--no-gui", "--out", str(out)])
    assert code == 1
    assert "not a folder" in (out / "report.json").read_text()
