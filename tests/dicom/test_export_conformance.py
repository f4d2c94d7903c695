"""DICOM exports conform: dicom3tools' ``dciodvfy`` finds no error in any kind of export.

Every kind (SEG with one or several segments, heatmap SC; identified or de-identified) is
written from the real files in ``../shared/data/dicom`` (CR and DX, MONOCHROME1, JPEG-LS /
JPEG 2000 / RLE compressed, Pixel Spacing ``0\\0``, Imager Pixel Spacing only, values invalid
for their VR, text without a declared character set) and from generated sources (DX with a
magnification factor, an MG-like film with Image Laterality), then checked with ``dciodvfy``:
any line starting with "Error" fails. Without dciodvfy the tests skip locally and fail in CI
(``CI=true``); install it with ``apt-get install dicom3tools``.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from collections.abc import Callable

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from tests import dicom_factory
from viewer.dicom.deidentify import UidMap
from viewer.dicom.export import (
    LUNG_CATEGORY, LUNG_TYPE, BurnedInAnnotationWarning, DicomExportError, SegmentCode,
    SegmentSpec, write_heatmap_capture, write_lung_segmentation, write_segmentation,
)

# Real sources: (file, what it exercises).
REAL = {
    "RG1_JLSN.dcm": "CR chest, MONOCHROME1, JPEG-LS near-lossless, Pixel Spacing 0\\0",
    "RG2_RLE.dcm": "CR hip, RLE, Pixel Spacing 0.2, empty Patient Orientation and Laterality",
    "RG3_J2KI.dcm": "CR extremity, MONOCHROME1, JPEG 2000, no spacing, Laterality R",
    "966_fixed.dcm": "DX chest, Imager Pixel Spacing, a hash in Birth Date and Accession Number",
    "JPEG2KLossless_1s_1f_u_16_16.dcm": "DX, Imager Pixel Spacing only, undeclared Cyrillic text",
    "NM_Kakadu44_SOTmarkerincons.dcm": "CR hand, Imager Pixel Spacing only, bad private groups",
}
MG_STORAGE = pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.1.2")  # Digital Mammography - For Presentation
FINDING_CATEGORY = SegmentCode("SCT", "49755003", "Morphologically Altered Structure")
PTX_TYPE = SegmentCode("SCT", "36118008", "Pneumothorax")
HEART_TYPE = SegmentCode("SCT", "80891009", "Heart")


def _dciodvfy() -> str:
    exe = shutil.which("dciodvfy")
    if exe:
        return exe
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail("dciodvfy (Debian package dicom3tools) is required in CI")
    pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")


def verify(path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's (errors, warnings) for ``path`` (it reports on stderr, one per line)."""
    proc = subprocess.run([_dciodvfy(), "-new", str(path)], capture_output=True, timeout=120,
                          check=False)
    lines = (proc.stderr + proc.stdout).decode("utf-8", "replace").splitlines()
    return ([ln for ln in lines if ln.startswith("Error")],
            [ln for ln in lines if ln.startswith("Warning")])


def assert_conforms(path: Path) -> list[str]:
    errors, warns = verify(path)
    assert not errors, f"{path.name}:\n" + "\n".join(errors)
    return warns


def _read(shared_dicom: Path, name: str) -> Dataset:
    return pydicom.dcmread(shared_dicom / name)


def _masks(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lung = np.zeros((rows, cols), bool)
    lung[rows // 5: rows * 4 // 5, cols // 8: cols * 3 // 8] = True
    lung[rows // 5: rows * 4 // 5, cols * 5 // 8: cols * 7 // 8] = True
    ptx = np.zeros((rows, cols), bool)  # inside the left lung field: segments overlap
    ptx[rows // 5: rows // 3, cols // 8: cols // 4] = True
    return lung, ptx, np.zeros((rows, cols), bool)


def _specs(rows: int, cols: int) -> list[SegmentSpec]:
    lung, ptx, empty = _masks(rows, cols)
    return [SegmentSpec("lung", lung, LUNG_CATEGORY, LUNG_TYPE, "lungs", "1.2.0"),
            SegmentSpec("pneumothorax", ptx, FINDING_CATEGORY, PTX_TYPE, "ptx", "0.1.0"),
            SegmentSpec("heart", empty, LUNG_CATEGORY, HEART_TYPE, "heart", "0.0.1")]


def _heatmap_rgb(rows: int, cols: int) -> np.ndarray:
    rgb = np.zeros((rows, cols, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, cols, dtype=np.uint8)
    return rgb


@pytest.fixture
def tool() -> str:
    return _dciodvfy()


# --- the validator itself: it must be able to fail --------------------------------------------


def test_the_check_finds_errors_in_a_non_conforming_file(shared_dicom: Path, tool: str) -> None:
    """RG1_JLSN.dcm itself carries Pixel Spacing 0\\0: the parser must report it."""
    errors, _ = verify(shared_dicom / "RG1_JLSN.dcm")
    assert any("PixelSpacing" in e and "zero" in e for e in errors), errors


# --- every kind of export from every real source ---------------------------------------------


@pytest.mark.parametrize("deidentify", [False, True], ids=["identified", "deidentified"])
@pytest.mark.parametrize("name", sorted(REAL))
def test_exports_of_real_files_conform(shared_dicom: Path, tmp_path: Path, tool: str,
                                       name: str, deidentify: bool) -> None:
    src = _read(shared_dicom, name)
    before = copy.deepcopy(src)
    rows, cols = int(src.Rows), int(src.Columns)
    uids = UidMap() if deidentify else None
    one = write_lung_segmentation(src, _masks(rows, cols)[0], tmp_path / "seg1.dcm",
                                  algorithm_name="lungs", algorithm_version="1.2.0",
                                  deidentify=uids)
    many = write_segmentation(src, _specs(rows, cols), tmp_path / "segn.dcm", deidentify=uids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BurnedInAnnotationWarning)
        sc = write_heatmap_capture(src, _heatmap_rgb(rows // 4, cols // 4), tmp_path / "sc.dcm",
                                   description="Grad-CAM++ covid 4.0.0", deidentify=uids)
    for path in (one, many, sc):
        warns = assert_conforms(path)
        if deidentify:  # the dummy identifiers let a DICOMDIR be built
            assert not [w for w in warns if "PatientID" in w or "StudyID" in w], warns
    with warnings.catch_warnings():  # comparing converts raw values: pydicom warns on 966
        warnings.simplefilter("ignore")
        assert src == before  # the source data set is never modified


def test_spacing_is_never_zero(shared_dicom: Path, tmp_path: Path) -> None:
    """RG1's Pixel Spacing 0\\0 is no spacing: the SEG carries no Pixel Measures at all."""
    src = _read(shared_dicom, "RG1_JLSN.dcm")
    seg = pydicom.dcmread(write_lung_segmentation(
        src, _masks(int(src.Rows), int(src.Columns))[0], tmp_path / "s.dcm",
        algorithm_name="lungs", algorithm_version="1"))
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert "PixelMeasuresSequence" not in shared
    assert list(seg.PatientOrientation) == ["L", "F"]


# --- generated sources ------------------------------------------------------------------------


def _spacing(seg: Dataset) -> list[float] | None:
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "PixelMeasuresSequence" not in shared:
        return None
    return [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]


@pytest.mark.parametrize(("header", "expected"), [
    ({"PixelSpacing": [0.15, 0.16], "ImagerPixelSpacing": [0.17, 0.18]}, [0.15, 0.16]),
    ({"ImagerPixelSpacing": [0.2, 0.2], "EstimatedRadiographicMagnificationFactor": 1.25},
     [0.16, 0.16]),
    ({"ImagerPixelSpacing": [0.2, 0.2]}, None),
    ({"PixelSpacing": [0, 0], "ImagerPixelSpacing": [0.2, 0.2]}, None),
    ({"ImagerPixelSpacing": [0.2, 0.2], "EstimatedRadiographicMagnificationFactor": 0}, None),
    ({"ImagerPixelSpacing": [0.2, 0.2], "EstimatedRadiographicMagnificationFactor": 1.1,
      "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.1", "PositionReferenceIndicator": ""},
     [0.2 / 1.1, 0.2 / 1.1]),
], ids=["pixel-spacing", "imager-by-magnification", "imager-only", "zero", "zero-factor",
        "frame-of-reference"])
def test_seg_pixel_spacing_rule(tmp_path: Path, tool: str, header: dict[str, object],
                                expected: list[float] | None) -> None:
    path = dicom_factory.write_dicom(
        tmp_path / "dx.dcm", np.zeros((48, 40), np.uint16), bits_stored=12,
        sop_class=dicom_factory.DX_STORAGE, Modality="DX", PatientOrientation=["A", "F"],
        **header)
    src = pydicom.dcmread(path)
    dest = write_segmentation(src, _specs(48, 40), tmp_path / "seg.dcm")
    assert_conforms(dest)
    spacing = _spacing(pydicom.dcmread(dest))
    if expected is None:
        assert spacing is None
    else:
        np.testing.assert_allclose(spacing, expected, rtol=1e-5)


def test_mammography_like_source_laterality_and_orientation(tmp_path: Path, tool: str) -> None:
    path = dicom_factory.write_dicom(
        tmp_path / "mg.dcm", np.zeros((64, 48), np.uint16), bits_stored=12, sop_class=MG_STORAGE,
        Modality="MG", ImageLaterality="L", BodyPartExamined="BREAST",
        PatientOrientation=["A", "FR"], ImagerPixelSpacing=[0.07, 0.07],
        EstimatedRadiographicMagnificationFactor=1.07, PhotometricInterpretation="MONOCHROME1")
    src = pydicom.dcmread(path)
    sc = pydicom.dcmread(write_heatmap_capture(src, _heatmap_rgb(70, 48), tmp_path / "sc.dcm",
                                               description="Grad-CAM++ x 1"))
    assert sc.Laterality == "L" and list(sc.PatientOrientation) == ["A", "FR"]
    assert sc.BodyPartExamined == "BREAST"
    assert_conforms(tmp_path / "sc.dcm")
    seg = write_segmentation(src, _specs(64, 48)[:1], tmp_path / "seg.dcm",
                             deidentify=UidMap())
    assert_conforms(seg)


def test_unpaired_body_part_has_no_laterality_and_unknown_stays_empty(
        tmp_path: Path, tool: str, make_dicom: Callable[..., Path]) -> None:
    chest = pydicom.dcmread(make_dicom("c.dcm", np.zeros((32, 32), np.uint16), bits_stored=12,
                                       BodyPartExamined="CHEST"))
    sc = pydicom.dcmread(write_heatmap_capture(chest, _heatmap_rgb(32, 32), tmp_path / "c_sc.dcm",
                                               description="x"))
    assert "Laterality" not in sc and "PatientOrientation" in sc and not sc.PatientOrientation
    assert_conforms(tmp_path / "c_sc.dcm")
    knee = pydicom.dcmread(make_dicom("k.dcm", np.zeros((32, 32), np.uint16), bits_stored=12,
                                      BodyPartExamined="KNEE"))
    sc = pydicom.dcmread(write_heatmap_capture(knee, _heatmap_rgb(32, 32), tmp_path / "k_sc.dcm",
                                               description="x"))
    assert "Laterality" in sc and sc.Laterality == ""  # paired, side unknown: Type 2C empty
    assert_conforms(tmp_path / "k_sc.dcm")


# --- the multi-segment writer -----------------------------------------------------------------


def test_multi_segment_seg_round_trip(shared_dicom: Path, tmp_path: Path, tool: str) -> None:
    src = _read(shared_dicom, "RG2_RLE.dcm")
    specs = _specs(int(src.Rows), int(src.Columns))
    dest = write_segmentation(src, specs, tmp_path / "seg.dcm")
    assert_conforms(dest)
    seg = hd.seg.segread(dest)
    assert seg.SegmentsOverlap == "YES" and int(seg.NumberOfFrames) == 3
    for number, spec in enumerate(specs, start=1):
        desc = seg.SegmentSequence[number - 1]
        assert int(desc.SegmentNumber) == number and desc.SegmentLabel == spec.label
        prop = desc.SegmentedPropertyTypeCodeSequence[0]
        cat = desc.SegmentedPropertyCategoryCodeSequence[0]
        assert (prop.CodingSchemeDesignator, prop.CodeValue, prop.CodeMeaning) == (
            spec.type.scheme, spec.type.value, spec.type.meaning)
        assert (cat.CodingSchemeDesignator, cat.CodeValue) == (spec.category.scheme,
                                                                spec.category.value)
        algo = desc.SegmentationAlgorithmIdentificationSequence[0]
        assert desc.SegmentAlgorithmName == spec.algorithm_name
        assert algo.AlgorithmVersion == spec.algorithm_version
        px = seg.get_pixels_by_source_instance([src.SOPInstanceUID], segment_numbers=[number])
        np.testing.assert_array_equal(px[0, :, :, 0].astype(bool), spec.mask)
    assert list(seg.SoftwareVersions)[1:] == ["lungs 1.2.0", "ptx 0.1.0", "heart 0.0.1"]
    assert "Research use only - not for diagnosis" in seg.SeriesDescription
    # Pixel Spacing 0.2 in the source: the SEG says so.
    assert _spacing(pydicom.dcmread(dest)) == [0.2, 0.2]


def test_bad_segment_input_gets_a_clear_message(tmp_path: Path,
                                                make_dicom: Callable[..., Path]) -> None:
    src = pydicom.dcmread(make_dicom("s.dcm", np.zeros((20, 30), np.uint16), bits_stored=12))
    lung = np.ones((20, 30), bool)
    with pytest.raises(DicomExportError, match="no segments"):
        write_segmentation(src, [], tmp_path / "a.dcm")
    with pytest.raises(DicomExportError, match=r"'lung'.*\(30, 20\).*20x30"):
        write_segmentation(src, [SegmentSpec("lung", lung.T, LUNG_CATEGORY, LUNG_TYPE, "m", "1")],
                           tmp_path / "b.dcm")
    blank = SegmentCode("", "", "")
    with pytest.raises(DicomExportError, match="'region' has no type code"):
        write_segmentation(src, [SegmentSpec("region", lung, LUNG_CATEGORY, blank, "m", "1")],
                           tmp_path / "c.dcm")
    with pytest.raises(ValueError):  # the old wrapper's contract
        write_lung_segmentation(src, lung[:5], tmp_path / "d.dcm", algorithm_name="m",
                                algorithm_version="1")
    with pytest.raises(DicomExportError, match="RGB"):
        write_heatmap_capture(src, np.zeros((4, 4), np.uint8), tmp_path / "e.dcm", description="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.dcm"]  # nothing written


def test_a_source_that_cannot_be_referenced_is_refused(shared_dicom: Path, tmp_path: Path) -> None:
    """A picture decoded from JPEG/PNG has no DICOM identity, and jpeg-baseline.dcm lacks its
    Study/Series Instance UIDs: no SEG or SC can reference them, so none is written."""
    plain = Dataset()  # what a non-DICOM image offers: pixels, no UIDs
    plain.Rows, plain.Columns = 16, 16
    with pytest.raises(DicomExportError, match="Study Instance UID.*export a PNG instead"):
        write_heatmap_capture(plain, _heatmap_rgb(16, 16), tmp_path / "p.dcm", description="x")
    src = _read(shared_dicom, "jpeg-baseline.dcm")
    rows, cols = int(src.Rows), int(src.Columns)
    with pytest.raises(DicomExportError, match=r"\(0020,000D\) Study Instance UID"):
        write_segmentation(src, _specs(rows, cols), tmp_path / "s.dcm")
    with pytest.raises(DicomExportError, match=r"\(0020,000E\) Series Instance UID"):
        write_heatmap_capture(src, _heatmap_rgb(8, 8), tmp_path / "c.dcm", description="x")
    assert not list(tmp_path.iterdir())


# --- de-identification ------------------------------------------------------------------------

IDENTITY = {
    "PatientName": "Doerfler^Janetta", "PatientID": "MRN-7734512", "PatientBirthDate": "19610417",
    "AccessionNumber": "ACC99127", "InstitutionName": "St Elsewhere Hospital",
    "ReferringPhysicianName": "Welby^Marcus", "StudyID": "ST4471", "OtherPatientIDs": "OID-5521",
    "StationName": "XRAYROOM7", "OperatorsName": "Tech^Tom",
}


def test_deidentified_exports_replace_identity_and_conform(tmp_path: Path, tool: str) -> None:
    path = dicom_factory.write_dicom(
        tmp_path / "src" / "cr.dcm", np.zeros((40, 32), np.uint16), bits_stored=12,
        StudyTime="101500", PatientSex="F", BodyPartExamined="CHEST",
        PatientOrientation=["L", "F"], PixelSpacing=[0.2, 0.2], **IDENTITY)
    src = pydicom.dcmread(path)
    uids = UidMap()
    out = tmp_path / "out"
    seg = write_segmentation(src, _specs(40, 32), out / "seg.dcm", deidentify=uids)
    with pytest.warns(BurnedInAnnotationWarning):  # (0028,0301) absent: pixels may carry text
        sc = write_heatmap_capture(src, _heatmap_rgb(44, 32), out / "sc.dcm",
                                   description="Grad-CAM++ x 1", deidentify=uids)
    for dest in (seg, sc):
        data = dest.read_bytes()
        for keyword, value in IDENTITY.items():
            for part in str(value).split("^"):
                assert part.encode() not in data, (dest.name, keyword)
        assert str(src.StudyInstanceUID).encode() not in data
        assert str(src.SOPInstanceUID).encode() not in data
        warns = assert_conforms(dest)
        assert not [w for w in warns if "PatientID" in w or "StudyID" in w], warns
    a, b = pydicom.dcmread(seg), pydicom.dcmread(sc)
    for ds in (a, b):
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientID).startswith("ANON-") and str(ds.StudyID).startswith("S")
        assert ds.PatientBirthDate == "" and ds.AccessionNumber == ""
    # One map, one export: the SEG and SC name the same pseudonymous patient, study and source.
    assert a.PatientID == b.PatientID and a.PatientName == b.PatientName
    assert a.StudyID == b.StudyID and a.StudyInstanceUID == b.StudyInstanceUID
    ref_seg = a.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    assert ref_seg == b.SourceImageSequence[0].ReferencedSOPInstanceUID == uids(src.SOPInstanceUID)
    # Another export (another map): nothing links the two.
    c = pydicom.dcmread(write_lung_segmentation(src, _masks(40, 32)[0], out / "seg2.dcm",
                                                algorithm_name="lungs", algorithm_version="1",
                                                deidentify=UidMap()))
    assert c.PatientID != a.PatientID and c.StudyInstanceUID != a.StudyInstanceUID


def test_deidentified_real_export_keeps_nothing_identifying(shared_dicom: Path, tmp_path: Path,
                                                           tool: str) -> None:
    src = _read(shared_dicom, "RG1_JLSN.dcm")
    values = [str(src.get(k, "") or "") for k in
              ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
               "InstitutionName", "StationName", "OtherPatientIDs")]
    assert all(values)
    dest = write_lung_segmentation(src, _masks(int(src.Rows), int(src.Columns))[0],
                                   tmp_path / "seg.dcm", algorithm_name="lungs",
                                   algorithm_version="1", deidentify=UidMap())
    data = dest.read_bytes()
    for value in values:
        assert value.encode() not in data
    assert_conforms(dest)


def test_text_without_a_declared_character_set_is_written_as_utf8(shared_dicom: Path,
                                                                   tmp_path: Path, tool: str) -> None:
    """JPEG2KLossless_... has Cyrillic text (Windows-1251) and no (0008,0005): the export decodes
    every value with one guess and declares UTF-8, instead of copying Latin-1 mojibake."""
    src = _read(shared_dicom, "JPEG2KLossless_1s_1f_u_16_16.dcm")
    assert "SpecificCharacterSet" not in src
    dest = write_segmentation(src, _specs(int(src.Rows), int(src.Columns))[:1], tmp_path / "s.dcm")
    assert_conforms(dest)
    seg = pydicom.dcmread(dest)
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    names = [str(seg.PatientName), str(seg.ContributingEquipmentSequence[0].InstitutionName),
             str(seg.ContributingEquipmentSequence[0].Manufacturer)]
    for text in names:
        assert not any("\u00c0" <= ch <= "\u00ff" for ch in text), "Latin-1 mojibake"
        assert any("\u0410" <= ch <= "\u044f" for ch in text)
    assert "№11" in names[1]  # the numero sign alone would have been read as Latin-1 "¹"


def test_a_bare_source_header_still_gives_conforming_exports(tmp_path: Path, tool: str) -> None:
    """Only the UIDs and the size: Type 2 attributes are written empty, Modality "OT", and the
    caller's data set is left as it was."""
    src = Dataset()
    src.SOPClassUID = dicom_factory.CR_STORAGE
    src.SOPInstanceUID, src.StudyInstanceUID, src.SeriesInstanceUID = (
        pydicom.uid.generate_uid() for _ in range(3))
    src.Rows, src.Columns = 16, 16
    before = copy.deepcopy(src)
    assert_conforms(write_segmentation(src, _specs(16, 16), tmp_path / "seg.dcm"))
    assert_conforms(write_heatmap_capture(src, _heatmap_rgb(8, 8), tmp_path / "sc.dcm",
                                          description="x"))
    assert src == before and "PatientID" not in src


def test_one_export_gives_one_patient_one_pseudonym(tmp_path: Path) -> None:
    """Two studies of one patient in one export: one patient pseudonym, two study pseudonyms."""
    uids = UidMap()
    out = []
    for i in range(2):
        path = dicom_factory.write_dicom(tmp_path / f"{i}.dcm", np.zeros((16, 16), np.uint16),
                                         bits_stored=12, StudyID=f"ST{i}", **{
                                             k: v for k, v in IDENTITY.items() if k != "StudyID"})
        src = pydicom.dcmread(path)
        out.append(pydicom.dcmread(write_segmentation(src, _specs(16, 16)[:1],
                                                      tmp_path / f"seg{i}.dcm", deidentify=uids)))
    assert out[0].PatientID == out[1].PatientID and out[0].PatientName == out[1].PatientName
    assert out[0].StudyID != out[1].StudyID
    assert out[0].StudyInstanceUID != out[1].StudyInstanceUID
