"""The fast header reader agrees with pydicom, or declines (returns None) and pydicom decides."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from tests import dicom_factory as fac
from viewer.dicom.fastheader import parse_header
from viewer.dicom.scan import scan_bytes


def _both(path):
    data = path.read_bytes()
    fast = scan_bytes(io.BytesIO(data), str(path), size=len(data), fast=True)
    slow = scan_bytes(io.BytesIO(data), str(path), size=len(data), fast=False)
    return fast, slow, parse_header(data[:16384])


def _seq(undefined: bool) -> Sequence:
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    inner = Dataset()
    inner.CodeValue = "X"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    seq = Sequence([item])
    if undefined:
        item.is_undefined_length_sequence_item = True
        inner.is_undefined_length_sequence_item = True
    return seq


@pytest.mark.parametrize("ts", [fac.ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined", [False, True])
def test_agrees_with_pydicom_including_sequences(tmp_path, ts, undefined):
    path = fac.write_dicom(tmp_path / "a.dcm", np.zeros((5, 7), np.uint16), transfer_syntax=ts,
                           bits_stored=12, NumberOfFrames="1", SeriesNumber=12,
                           StudyDescription="CHEST PA  ", ReferencedImageSequence=_seq(undefined),
                           ViewPosition="AP", PatientName="Müller^Jörg", SpecificCharacterSet="ISO_IR 100")
    if undefined:
        import pydicom

        ds = pydicom.dcmread(path)
        ds["ReferencedImageSequence"].is_undefined_length = True
        ds.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence[0].is_undefined_length_sequence_item = True
        ds["ReferencedImageSequence"][0]["PurposeOfReferenceCodeSequence"].is_undefined_length = True
        ds.save_as(path)
    fast, slow, parsed = _both(path)
    assert parsed is not None and parsed["Rows"] == 5 and parsed["PatientName"] == "Müller^Jörg"
    assert fast == slow
    assert fast.study_description == "CHEST PA" and fast.series_number == 12


def test_utf8_names(tmp_path):
    path = fac.write_dicom(tmp_path / "u.dcm", np.zeros((2, 2), np.uint8),
                           SpecificCharacterSet="ISO_IR 192", PatientName="山田^太郎")
    fast, slow, parsed = _both(path)
    assert parsed is not None and fast == slow and fast.patient_name == "山田^太郎"


def test_declines_other_character_sets_with_non_ascii_text(tmp_path):
    path = fac.write_dicom(tmp_path / "g.dcm", np.zeros((2, 2), np.uint8),
                           SpecificCharacterSet="GB18030", PatientName="王^小明")
    fast, slow, parsed = _both(path)
    assert parsed is None and fast == slow and fast.patient_name == "王^小明"


@pytest.mark.parametrize("ts", [ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_declines_big_endian_and_deflate(tmp_path, ts):
    path = fac.write_dicom(tmp_path / "b.dcm", np.zeros((3, 3), np.uint16), transfer_syntax=ts)
    fast, slow, parsed = _both(path)
    assert parsed is None and fast == slow and fast.rows == 3


@pytest.mark.filterwarnings("ignore:The value length")
def test_declines_truncated_and_long_headers(tmp_path):
    path = fac.write_dicom(tmp_path / "l.dcm", np.zeros((3, 3), np.uint16),
                           ImageComments="x" * 20000, Rows=3)
    data = path.read_bytes()
    assert parse_header(data[:16384]) is None
    assert parse_header(data[:300]) is None
    fast, slow, _ = _both(path)
    assert fast == slow and fast.rows == 3
    assert parse_header(b"\x00" * 200) is None


def test_text_without_a_declared_character_set_is_best_guessed(tmp_path) -> None:
    """Issue 16: the 16-bit DX chest (no (0008,0005)) showed its Cyrillic name as mojibake."""
    import numpy as np

    from tests import dicom_factory
    from viewer.dicom.fastheader import undeclared_text
    from viewer.dicom.load import read_header
    from viewer.services.library import scan_paths

    assert undeclared_text("Емельянова^Анна".encode("cp1251")) == "Емельянова^Анна"
    assert undeclared_text("Müller^Jürgen".encode("latin-1")) == "Müller^Jürgen"
    assert undeclared_text("Müller".encode()) == "Müller"
    path = dicom_factory.write_dicom(tmp_path / "ru.dcm", np.zeros((8, 8), np.uint16), bits_stored=12)
    raw = path.read_bytes()
    old = b"Test^Patient"
    new = "Петров^Иван".encode("cp1251")
    new = new + b" " * (len(old) - len(new)) if len(new) <= len(old) else new[: len(old)]
    path.write_bytes(raw.replace(old, new))
    (rec,) = scan_paths([str(path)], workers=1).index.records()
    assert rec.patient_name.strip() == "Петров^Иван"
    assert [n.value.strip() for n in read_header(rec) if n.keyword == "PatientName"] == ["Петров^Иван"]
