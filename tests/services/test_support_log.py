"""The support log (issue 13): what a user can send with "it froze on my folder", with no
patient data in it. Patient attributes and a telltale folder name are planted in real DICOM
files, the real entry points run over them (scan, decode failures, `radview analyze`), and
the log file must say what happened without any of them."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import dicom_factory
from tests.inference.tiny_models import tiny_models_dir  # noqa: F401
from viewer.services import support_log
from viewer.services.support_log import LOG_FILE_NAME, file_token, problem_category

FOLDER_MARKER = "TelltaleWard7Smith"
NAME_MARKER = "Zorbulon"
ID_MARKER = "MRN55512TELL"
BIRTH = "19391122"
PLANTED = (FOLDER_MARKER, NAME_MARKER, NAME_MARKER.upper(), ID_MARKER, BIRTH)


def _study(root: Path) -> Path:
    folder = root / FOLDER_MARKER / f"{NAME_MARKER}_chest"
    tags = dict(PatientName=f"{NAME_MARKER}^Ann", PatientID=ID_MARKER, PatientBirthDate=BIRTH,
                BodyPartExamined="CHEST")
    img = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096
    good = dicom_factory.write_dicom(folder / f"{ID_MARKER}_1.dcm", img, bits_stored=12, **tags)
    # Cut inside the pixel data: the header scans, the decode fails.
    dicom_factory.write_truncated(good, folder / f"{NAME_MARKER}_cut.dcm", keep=good.stat().st_size - 2000)
    (folder / f"{ID_MARKER}_notes.dcm").write_bytes(b"not dicom at all " * 20)
    return folder


def _log_text(folder: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob(LOG_FILE_NAME + "*")))


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    support_log.setup_support_log("test", log_dir=folder)
    return folder


def test_scan_and_decode_failures_are_logged_without_patient_data(tmp_path: Path,
                                                                   log_dir: Path) -> None:
    from viewer.dicom.load import LoadError
    from viewer.services.library import load_image, scan_paths

    study = _study(tmp_path / "in")
    scan = scan_paths([str(study.parent)], workers=1)
    records = [r for r in scan.index.records() if r.is_image]
    assert len(records) == 2 and scan.problems  # the text file is a problem
    failures = 0
    for rec in records:
        try:
            load_image(rec)
        except LoadError:
            failures += 1
    assert failures == 1
    text = _log_text(log_dir)
    assert "start test:" in text and "radview 0.1.0" in text and "numpy" in text  # versions
    assert "scan: 1 path(s), 3 files, 2 images" in text
    assert "decode failed: file-" in text and "[load] LoadError" in text
    assert "Traceback (code locations only" in text and "viewer/dicom/load.py:" in text
    for planted in PLANTED:
        assert planted not in text, planted
    assert str(tmp_path) not in text


def test_exception_messages_and_opened_paths_never_reach_the_log(tmp_path: Path,
                                                                 log_dir: Path) -> None:
    log = logging.getLogger("viewer.test")
    secret = tmp_path / FOLDER_MARKER
    support_log.register_opened([str(secret)])
    try:
        raise ValueError(f"element (0010,0010) has value {NAME_MARKER}^Ann")
    except ValueError as exc:
        support_log.log_file_error(log, "decode", secret / "x.dcm", exc, position=4)
    log.warning("careless caller mentions %s/x.dcm", secret)  # the net under the rules
    text = _log_text(log_dir)
    assert "[data] ValueError" in text and "(#4 in batch)" in text
    assert "careless caller mentions file-" in text
    assert NAME_MARKER not in text and FOLDER_MARKER not in text


def test_tokens_are_stable_within_a_session_and_categories_drop_details() -> None:
    assert file_token("/a/b.dcm") == file_token("/a/b.dcm") != file_token("/a/c.dcm")
    assert file_token("/a/z.zip", "m1") != file_token("/a/z.zip", "m2")
    assert problem_category(f"damaged DICOM header: ValueError: {NAME_MARKER}") == "damaged DICOM header"
    assert problem_category(f"unsafe member name '{NAME_MARKER}.dcm' refused") == "unsafe member name"


def test_log_rotates(tmp_path: Path) -> None:
    folder = tmp_path / "rot"
    support_log.setup_support_log("test", log_dir=folder)
    log = logging.getLogger("radview")
    for i in range(12_000):
        log.info("line %d %s", i, "x" * 200)
    files = sorted(p.name for p in folder.iterdir())
    assert LOG_FILE_NAME in files and f"{LOG_FILE_NAME}.1" in files
    assert all((folder / f).stat().st_size <= 2 * 1024 * 1024 + 1024 for f in files)


def test_unwritable_log_folder_does_not_stop_the_program(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert support_log.setup_support_log("test", log_dir=blocker / "logs") is None
    logging.getLogger("radview").warning("still works")


def test_analyze_writes_the_support_log_without_patient_data(
        tmp_path: Path, tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from viewer.cli import analyze_main

    study = _study(tmp_path / "in")
    logs = tmp_path / "cli-logs"
    monkeypatch.setenv("RADVIEW_LOG_DIR", str(logs))
    code = analyze_main([str(study), "--models-dir", str(tiny_models_dir), "--out",
                         str(tmp_path / "out" / "r.csv"), "--workers", "1", "--quiet"])
    assert code == 1  # the truncated file is an error row
    text = _log_text(logs)
    assert "start analyze:" in text and "onnxruntime" in text
    assert "session " in text and "CPUExecutionProvider" in text  # the execution provider
    assert "analyze: 2 image(s)" in text and "analyze done: 2 image(s)" in text
    assert "decode failed: file-" in text
    for planted in PLANTED:
        assert planted not in text, planted


def test_log_path_option_prints_the_file(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "RADVIEW_LOG_DIR": str(tmp_path / "x")}
    out = subprocess.run([sys.executable, "-m", "viewer", "--log-path"], capture_output=True,
                         text=True, env=env, timeout=60, check=True)
    assert out.stdout.strip() == str(tmp_path / "x" / LOG_FILE_NAME)
