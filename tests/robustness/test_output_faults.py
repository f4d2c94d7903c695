"""Faults at the output: a full disk, a read-only folder, a corrupt or swapped model file.

A full disk is real at the file layer without a mount: the temporary file an export writes to
is opened on ``/dev/full``, whose every write fails with ENOSPC. A read-only folder is a real
``chmod`` when the tests do not run as root (root ignores permissions), and an injected EROFS
otherwise.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests import dicom_factory
from tests.robustness.fault_child import sample_result
from viewer.dicom.export import DicomWriteError, write_lung_segmentation
from viewer.inference.registry import ModelRegistry, bundled_models_dir
from viewer.services.export import (
    CsvResultWriter, ExportError, result_rows, write_csv, write_json, write_png,
)

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")


@pytest.fixture
def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporary export files are created (so their names exist) but written to /dev/full."""
    real = tempfile.mkstemp

    def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, path = real(*args, **kwargs)  # type: ignore[arg-type]
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.fixture
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
    else:
        def mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
            raise OSError(errno.EROFS, "Read-only file system", str(kwargs.get("dir", "")))

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    yield folder
    folder.chmod(0o700)


def _nothing_left(folder: Path) -> None:
    assert [p.name for p in folder.iterdir()] == [] if folder.exists() else True


def test_service_exports_on_full_disk(tmp_path: Path, disk_full: None) -> None:
    rows = result_rows(sample_result(1))
    rgb = np.zeros((40, 60, 3), np.uint8)
    out = tmp_path / "out"
    for write, name in ((lambda d: write_csv(rows, d), "r.csv"), (lambda d: write_json(rows, d), "r.json"),
                        (lambda d: write_png(rgb, d), "r.png")):
        with pytest.raises(ExportError, match="not enough free space to write " + name.replace(".", r"\.")):
            write(out / name)
        _nothing_left(out)
    with pytest.raises(ExportError, match="not enough free space"):
        with CsvResultWriter(out / "stream.csv") as writer:
            for _ in range(2000):  # past the buffer, so a write reaches the disk mid-stream
                writer.write_result(sample_result(2))
    _nothing_left(out)


def test_dicom_export_on_full_disk(tmp_path: Path, disk_full: None) -> None:
    src = dicom_factory.write_dicom(tmp_path / "src.dcm", np.zeros((32, 40), np.uint16), bits_stored=12)
    out = tmp_path / "out"
    with pytest.raises(DicomWriteError, match="not enough free space to write seg.dcm"):
        write_lung_segmentation(pydicom.dcmread(src), np.ones((32, 40), np.uint8), out / "seg.dcm",
                                algorithm_name="lungs", algorithm_version="1")
    _nothing_left(out)


def test_service_exports_to_read_only_folder(read_only: Path) -> None:
    with pytest.raises(ExportError, match="read-only or not writable"):
        write_csv(result_rows(sample_result(3)), read_only / "r.csv")
    with pytest.raises(ExportError, match="read-only or not writable"):
        CsvResultWriter(read_only / "s.csv")
    assert list(read_only.iterdir()) == []


def _cli_input(tmp_path: Path) -> Path:
    study = tmp_path / "study"
    img = (np.add.outer(np.arange(96), np.arange(80)) * 20).astype(np.uint16)
    dicom_factory.write_dicom(study / "img.dcm", img, bits_stored=12, BodyPartExamined="CHEST",
                              WindowCenter=2000, WindowWidth=4000)
    return study


def _have_models() -> bool:
    return bool(ModelRegistry.default().available())


@pytest.mark.skipif(not _have_models(), reason="no usable committed model")
def test_cli_full_disk_and_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from viewer.cli import EXIT_OUTPUT, analyze_main

    study = _cli_input(tmp_path)
    real = tempfile.mkstemp

    def full(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, path = real(*args, **kwargs)  # type: ignore[arg-type]
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), path

    monkeypatch.setattr(tempfile, "mkstemp", full)
    out = tmp_path / "results"
    code = analyze_main([str(study), "--out", str(out / "r.json"), "--quiet", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == EXIT_OUTPUT, err
    assert "not enough free space to write r.json" in err and "Traceback" not in err
    assert not (out / "r.json").exists() and not list(out.glob(".*part"))
    code = analyze_main([str(study), "--out", str(out / "r.csv"), "--quiet", "--workers", "1"])
    assert code == EXIT_OUTPUT
    assert "not enough free space to write r.csv" in capsys.readouterr().err
    assert not (out / "r.csv").exists()

    def ro(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", ro)
    code = analyze_main([str(study), "--out", str(out / "r.csv"), "--quiet"])
    assert code == EXIT_OUTPUT
    assert "read-only or not writable" in capsys.readouterr().err


def _model_copy(tmp_path: Path, model_id: str, onnx_bytes: bytes) -> Path:
    folder = tmp_path / "user_models"
    folder.mkdir(exist_ok=True)
    shutil.copy(bundled_models_dir() / f"{model_id}.json", folder / f"{model_id}.json")
    (folder / f"{model_id}.onnx").write_bytes(onnx_bytes)
    return folder


@pytest.mark.skipif(not (bundled_models_dir() / "pneumonia.onnx").exists()
                    or not (bundled_models_dir() / "body_region.onnx").exists(),
                    reason="committed models absent")
@pytest.mark.parametrize("damage", ["corrupt", "swapped", "truncated"])
def test_corrupt_or_swapped_model_is_refused(tmp_path: Path, damage: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    good = (bundled_models_dir() / "pneumonia.onnx").read_bytes()
    if damage == "corrupt":
        data = bytearray(good)
        data[len(data) // 2] ^= 0xFF
        onnx_bytes = bytes(data)
    elif damage == "swapped":
        onnx_bytes = (bundled_models_dir() / "body_region.onnx").read_bytes()
    else:
        onnx_bytes = good[: len(good) // 3]
    assert hashlib.sha256(onnx_bytes).hexdigest() != json.loads(
        (bundled_models_dir() / "pneumonia.json").read_text())["sha256"]
    folder = _model_copy(tmp_path, "pneumonia", onnx_bytes)
    registry = ModelRegistry([folder])
    assert registry.get("pneumonia") is None
    (entry,) = registry.unavailable()
    assert entry.id == "pneumonia" and "checksum" in entry.reason and "does not match" in entry.reason
    # The CLI names the refused model and why, then runs with the bundled copy.
    if _have_models():
        from viewer.cli import analyze_main

        study = _cli_input(tmp_path)
        code = analyze_main([str(study), "--models-dir", str(folder), "--models", "pneumonia",
                             "--out", str(tmp_path / "o" / "r.csv"), "--workers", "1"])
        err = capsys.readouterr().err
        assert f"model pneumonia unavailable: {entry.reason}" in err
        assert code in (0, 1) and "Traceback" not in err
