"""scan_paths over folders, DICOMDIR and zip archives; the index tree; load_image."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.fileset import FileSet

from tests import dicom_factory as fac
from viewer.services import library
from viewer.services.library import LoadError, StudyIndex, load_image, scan_paths
from viewer.services.tasks import Cancelled, CancelToken


def _tree(index: StudyIndex) -> dict[str, dict[str, dict[str, int]]]:
    return {p.patient_id: {st.uid: {se.uid: se.count for se in st.series.values()}
                           for st in p.studies.values()} for p in index.patients()}


def test_folder_scan_builds_patient_study_series_tree(small_study):
    calls: list[tuple[int, int]] = []
    result = scan_paths([str(small_study)], cancel=CancelToken(), progress=lambda d, t: calls.append((d, t)))
    assert len(result.index) == 5 and result.files_seen == 6  # 5 images + the SR; notes.txt skipped
    assert _tree(result.index) == {"A1": {"1.2.3.1": {"1.2.3.1.1": 2, "1.2.3.1.2": 1}},
                                   "B2": {"1.2.3.2": {"1.2.3.2.1": 2}}}
    assert [p.label for p in result.index.patients()] == ["Alpha A (A1)", "Beta B (B2)"]
    (sr_problem,) = result.problems
    assert sr_problem.path.endswith("report.dcm") and "not an image" in sr_problem.reason
    # progress: starts at 0, never goes backwards, ends at the total
    assert calls[0][0] == 0 and calls[-1][0] == calls[-1][1] == 6
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


def test_instances_for_sorts_by_instance_number(small_study):
    index = scan_paths([str(small_study)]).index
    alpha = index.patients()[0]
    series = alpha.studies["1.2.3.1"].series["1.2.3.1.1"]
    assert [r.instance_number for r in index.instances_for(series)] == [1, 2]
    assert len(index.instances_for(alpha)) == 3 and alpha.count == 3


def test_several_paths_single_files_and_dedupe(small_study):
    one = next(small_study.rglob("b_0.dcm"))
    result = scan_paths([str(small_study / "a"), str(one), str(one)])
    assert len(result.index) == 4
    other = scan_paths([str(small_study)]).index
    assert result.index.merge(other) == 1 and len(result.index) == 5


def test_missing_path_is_a_problem(tmp_path):
    result = scan_paths([str(tmp_path / "nope")])
    assert len(result.index) == 0 and "does not exist" in result.problems[0].reason


def test_cancel_raises(small_study):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        scan_paths([str(small_study)], cancel=token)


def test_dicomdir_lists_referenced_files(tmp_path):
    src = fac.write_dicom(tmp_path / "src" / "a.dcm", np.ones((4, 4), np.uint16), StudyTime="101010",
                          StudyID="1", PatientID="DD1")
    fs = FileSet()
    fs.add(pydicom.dcmread(src))
    fs.write(tmp_path / "media")
    result = scan_paths([str(tmp_path / "media" / "DICOMDIR")])
    (rec,) = result.index.records()
    assert rec.patient_id == "DD1" and Path(rec.path).name == "IM000000"
    assert load_image(rec).pixels.sum() == 16
    # walking the media folder finds the same file and does not report the DICOMDIR itself
    walked = scan_paths([str(tmp_path / "media")])
    assert len(walked.index) == 1 and not walked.problems


def _zip_with_members(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_members_are_read_in_place(tmp_path):
    dcm = fac.write_dicom(tmp_path / "x.dcm", np.arange(16, dtype=np.uint16).reshape(4, 4), PatientID="Z1")
    png = cv2.imencode(".png", np.full((5, 7), 9, np.uint8))[1].tobytes()
    archive = _zip_with_members(tmp_path / "study.zip", {
        "case/img1.dcm": dcm.read_bytes(), "case/pic.png": png, "../evil.dcm": dcm.read_bytes(),
        "case/readme.txt": b"hi"})
    before = sorted(os.listdir(tmp_path))
    result = scan_paths([str(archive)])
    assert sorted(os.listdir(tmp_path)) == before  # nothing extracted
    members = {r.member: r for r in result.index.records()}
    assert set(members) == {"case/img1.dcm", "case/pic.png"}
    np.testing.assert_array_equal(load_image(members["case/img1.dcm"]).pixels,
                                  np.arange(16).reshape(4, 4))
    assert load_image(members["case/pic.png"]).pixels.shape == (5, 7)
    assert any("unsafe" in p.reason and p.member == "../evil.dcm" for p in result.problems)


def test_zip_bomb_member_is_refused(tmp_path):
    archive = _zip_with_members(tmp_path / "bomb.zip", {"zeros.dcm": bytes(20 * 1024 * 1024)})
    result = scan_paths([str(archive)])
    assert len(result.index) == 0
    assert "zip bomb" in result.problems[0].reason


def test_zip_whose_members_together_expand_too_much_is_refused(tmp_path, make_dicom, monkeypatch):
    import viewer.services.discovery as discovery

    dcm = make_dicom("x.dcm", np.zeros((4, 4), np.uint16)).read_bytes()
    members = {f"m{i}.dcm": dcm for i in range(3)}
    members.update({f"pad{i}.bin": bytes(300_000) for i in range(40)})
    archive = _zip_with_members(tmp_path / "many.zip", members)
    monkeypatch.setattr(discovery, "MAX_ZIP_RATIO", 50.0)
    result = scan_paths([str(archive)])
    assert len(result.index) == 0 and "expands to" in result.problems[0].reason


def test_truncated_and_foreign_files_in_a_folder(tmp_path, make_dicom):
    good = make_dicom("ok.dcm", np.zeros((8, 8), np.uint16))
    fac.write_truncated(good, tmp_path / "cut.dcm", 200)
    (tmp_path / "blob.bin").write_bytes(os.urandom(1000))
    fac.write_rtstruct(tmp_path / "rt.dcm")
    result = scan_paths([str(tmp_path)])
    reasons = {Path(p.path).name: p.reason for p in result.problems}
    assert "blob.bin" in reasons and "rt.dcm" in reasons
    assert Path(result.index.records()[0].path).name == "ok.dcm"


def test_process_pool_path_matches_serial(tmp_path, monkeypatch):
    for i in range(40):
        fac.write_dicom(tmp_path / f"f{i:03d}.dcm", np.zeros((2, 2), np.uint8), InstanceNumber=i,
                        StudyInstanceUID="1.2.9", SeriesInstanceUID="1.2.9.1")
    serial = scan_paths([str(tmp_path)], workers=1)
    monkeypatch.setattr(library, "POOL_THRESHOLD", 10)
    before = threading.active_count()
    pooled = scan_paths([str(tmp_path)], workers=2)
    assert sorted(r.path for r in pooled.index.records()) == sorted(r.path for r in serial.index.records())
    assert len(pooled.index) == 40 and threading.active_count() <= before


def test_load_plain_images(tmp_path):
    grey_rgb = np.dstack([np.full((3, 4), 50, np.uint8)] * 3)
    colour = np.zeros((3, 4, 3), np.uint8)
    colour[..., 2] = 255  # BGR: red
    grey16 = np.full((3, 4), 40000, np.uint16)
    files = {}
    for name, arr in (("g.jpg", grey_rgb), ("c.png", colour), ("d.png", grey16)):
        (tmp_path / name).write_bytes(cv2.imencode(os.path.splitext(name)[1], arr)[1].tobytes())
    index = scan_paths([str(tmp_path)]).index
    for rec in index.records():
        files[Path(rec.path).name] = load_image(rec)
    assert files["g.jpg"].photometric == "MONOCHROME2" and files["g.jpg"].pixels.ndim == 2
    assert files["c.png"].photometric == "RGB"
    np.testing.assert_array_equal(files["c.png"].pixels[0, 0], [255, 0, 0])
    assert files["d.png"].pixels.dtype == np.uint16 and files["d.png"].bits_stored == 16


def test_load_image_errors_are_load_errors(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    rec = library.InstanceRecord(path=str(bad), kind="image", rows=1, cols=1)
    with pytest.raises(LoadError):
        load_image(rec)


def test_long_lived_executor_is_used_and_left_running(tmp_path, monkeypatch):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    for i in range(30):
        fac.write_dicom(tmp_path / f"f{i:03d}.dcm", np.zeros((2, 2), np.uint8), InstanceNumber=i)
    monkeypatch.setattr(library, "WARM_POOL_THRESHOLD", 10)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        first = scan_paths([str(tmp_path)], workers=2, executor=pool)
        second = scan_paths([str(tmp_path)], workers=2, executor=pool)  # pool still usable
        assert pool.submit(len, [1, 2]).result(timeout=30) == 2
    assert len(first.index) == len(second.index) == 30


def test_an_8_bit_png_opens_at_its_full_range(tmp_path):
    """Issue 16: an already-windowed 8-bit image opened with an auto window that clipped its
    brightest 0.5 %; it is shown as stored (what the models are given too)."""
    import cv2

    from viewer.core.windowing import default_voi, display_image
    from viewer.services.library import load_plain_image

    img = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    ok, buf = cv2.imencode(".png", img)
    rg = load_plain_image(buf.tobytes(), str(tmp_path / "x.png"))
    assert default_voi(rg).explanation.startswith("Full range")
    np.testing.assert_array_equal(display_image(rg), img)
    ok, buf16 = cv2.imencode(".png", (img.astype(np.uint16) * 257))
    assert default_voi(load_plain_image(buf16.tobytes(), "y.png")).origin == "auto"
