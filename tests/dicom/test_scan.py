"""Header scanning of generated files: records, non-images, damaged and non-DICOM input."""

from __future__ import annotations

import cv2
import numpy as np
from pydicom import uid

from tests import dicom_factory as fac
from viewer.dicom.scan import InstanceRecord, LoadProblem, scan_file, undecodable_problem


def test_record_fields(make_dicom):
    path = make_dicom("x.dcm", np.zeros((30, 20), np.uint16), bits_stored=12, PatientName="Doe^Jane",
                      PatientID="P9", StudyDate="20230405", SeriesNumber=7, InstanceNumber=3,
                      BodyPartExamined="CHEST", ViewPosition="PA", photometric="MONOCHROME1")
    rec = scan_file(path)
    assert isinstance(rec, InstanceRecord) and rec.is_image
    assert (rec.rows, rec.cols, rec.frames, rec.bits_stored) == (30, 20, 1, 12)
    assert rec.patient_name == "Doe^Jane" and rec.patient_id == "P9" and rec.study_date == "20230405"
    assert rec.series_number == 7 and rec.instance_number == 3 and rec.body_part == "CHEST"
    assert rec.view_position == "PA" and rec.photometric == "MONOCHROME1" and rec.kind == "dicom"
    assert rec.transfer_syntax_uid == uid.ExplicitVRLittleEndian and rec.member is None
    assert rec.size == path.stat().st_size and rec.mtime == path.stat().st_mtime
    assert rec.patient_sex == "" and rec.accession_number == ""


def test_multi_frame_count(make_dicom):
    rec = scan_file(make_dicom("mf.dcm", np.zeros((4, 3, 2), np.uint8)))
    assert isinstance(rec, InstanceRecord) and rec.frames == 4


def test_non_image_objects_are_problems(tmp_path):
    sr = scan_file(fac.write_sr(tmp_path / "sr.dcm"))
    assert isinstance(sr, LoadProblem) and "not an image" in sr.reason and "SR" in sr.reason
    rt = scan_file(fac.write_rtstruct(tmp_path / "rt.dcm"))
    assert isinstance(rt, LoadProblem) and "RT Structure Set" in rt.reason


def test_damaged_and_foreign_files_never_raise(make_dicom, tmp_path):
    good = make_dicom("g.dcm", np.zeros((8, 8), np.uint16))
    header_cut = fac.write_truncated(good, tmp_path / "cut_header.dcm", 150)
    text = tmp_path / "notes"
    text.write_text("hello " * 50)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path in (header_cut, text, empty, tmp_path / "missing.dcm"):
        result = scan_file(path)
        assert isinstance(result, (LoadProblem, InstanceRecord))
    assert isinstance(scan_file(text), LoadProblem)
    assert "cannot read" in scan_file(tmp_path / "missing.dcm").reason


def test_png_and_jpeg_headers(tmp_path):
    grey = np.zeros((37, 53), np.uint8)
    png, jpg = tmp_path / "a.png", tmp_path / "b.JPG"
    png.write_bytes(cv2.imencode(".png", grey)[1].tobytes())
    jpg.write_bytes(cv2.imencode(".jpg", np.zeros((41, 29, 3), np.uint8))[1].tobytes())
    for path, shape in ((png, (37, 53)), (jpg, (41, 29))):
        rec = scan_file(path)
        assert isinstance(rec, InstanceRecord) and rec.kind == "image"
        assert (rec.rows, rec.cols) == shape
        assert rec.study_uid == f"dir:{tmp_path}"


def test_undecodable_syntax_gives_precise_problem(make_dicom):
    rec = scan_file(make_dicom("x.dcm", np.zeros((4, 4), np.uint16)))
    assert undecodable_problem(rec) is None
    fake = InstanceRecord(path="/x.dcm", transfer_syntax_uid=uid.JPEGExtended12Bit, rows=4, cols=4,
                          bits_stored=12)
    try:
        import libjpeg  # noqa: F401
    except ImportError:
        problem = undecodable_problem(fake)
        assert problem is not None and "JPEG Extended" in problem.reason
        assert "pylibjpeg-libjpeg" in problem.advice and problem.transfer_syntax == uid.JPEGExtended12Bit
