"""The real CR/DX files in ../shared/data/dicom (read in place, never copied).

Every file outside broken/ decodes with the bundled decoders (except 12-bit JPEG Extended, which
must name pylibjpeg-libjpeg), lossless encodings of one image agree exactly, the MONOCHROME1
chest and extremity show bone bright, and nothing in broken/ crashes.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from viewer.core.windowing import display_image
from viewer.dicom.load import LoadError, load_radiograph
from viewer.dicom.scan import InstanceRecord, LoadProblem, scan_file


def _index(shared_dicom: Path) -> list[dict[str, str]]:
    with open(shared_dicom / "index.csv", newline="") as fp:
        return list(csv.DictReader(fp))


def _has_libjpeg() -> bool:
    try:
        import libjpeg  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_every_good_file_decodes_with_the_indexed_shape(shared_dicom):
    rows = [r for r in _index(shared_dicom) if not r["file"].startswith("broken/")]
    assert len(rows) >= 19
    for row in rows:
        path = shared_dicom / row["file"]
        rec = scan_file(path)
        assert isinstance(rec, InstanceRecord), row["file"]
        assert (rec.rows, rec.cols, rec.photometric) == (int(row["rows"]), int(row["cols"]), row["photometric"])
        if row["transfer_syntax_uid"] == "1.2.840.10008.1.2.4.51" and not _has_libjpeg():
            with pytest.raises(LoadError) as info:
                load_radiograph(path)
            assert "pylibjpeg-libjpeg" in info.value.advice and "GPL" in info.value.advice
            assert info.value.transfer_syntax == "1.2.840.10008.1.2.4.51"
            continue
        rg = load_radiograph(path)
        assert rg.pixels.shape[:2] == (int(row["rows"]), int(row["cols"])), row["file"]
        img = display_image(rg)
        assert img.dtype == np.uint8 and img.shape[:2] == rg.pixels.shape[:2]
        # a displayable radiograph uses the grey range, it is not a flat field
        assert img.std() > 20, row["file"]


@pytest.mark.slow
@pytest.mark.parametrize("patient,names", [
    ("RG2", ["RG2_J2KR", "RG2_JLSL", "RG2_JPLL", "RG2_RLE"]),
    ("RG3", ["RG3_J2KR", "RG3_JLSL", "RG3_JPLL", "RG3_RLE"]),
])
def test_lossless_encodings_agree(shared_dicom, patient, names):
    ref = load_radiograph(shared_dicom / f"{names[0]}.dcm").pixels
    for name in names[1:]:
        np.testing.assert_array_equal(load_radiograph(shared_dicom / f"{name}.dcm").pixels, ref, err_msg=name)
    lossy = load_radiograph(shared_dicom / f"{patient}_JLSN.dcm").pixels
    assert np.abs(lossy.astype(np.int32) - ref).mean() < 5


def _box(img: np.ndarray, r0: float, r1: float, c0: float, c1: float) -> float:
    rows, cols = img.shape
    return float(img[int(rows * r0):int(rows * r1), int(cols * c0):int(cols * c1)].mean())


def test_monochrome1_chest_lungs_darker_than_mediastinum(shared_dicom):
    rg = load_radiograph(shared_dicom / "RG1_JLSN.dcm")
    assert rg.photometric == "MONOCHROME1"
    img = display_image(rg)
    lungs = (_box(img, 0.35, 0.55, 0.20, 0.35) + _box(img, 0.35, 0.55, 0.65, 0.80)) / 2
    mediastinum = _box(img, 0.35, 0.55, 0.45, 0.55)
    assert mediastinum > lungs + 40, (lungs, mediastinum)


def test_monochrome1_extremity_bone_bright_air_dark_collimation_white(shared_dicom):
    rg = load_radiograph(shared_dicom / "RG3_RLE.dcm")
    img = display_image(rg)
    band = (0.35, 0.55)
    collimated = min(_box(img, *band, 0.0, 0.2), _box(img, *band, 0.8, 1.0))
    air = max(_box(img, *band, 0.30, 0.40), _box(img, *band, 0.62, 0.68))
    leg = _box(img, *band, 0.45, 0.55)
    assert collimated > 240 and air < 70 and leg > air + 60, (collimated, air, leg)


@pytest.mark.slow
def test_broken_files_never_crash_and_explain_themselves(shared_dicom):
    broken = sorted((shared_dicom / "broken").glob("*.dcm"))
    assert broken
    for path in broken:
        rec = scan_file(path)
        if isinstance(rec, LoadProblem):
            assert rec.reason
            continue
        try:
            rg = load_radiograph(rec)
        except LoadError as exc:
            assert path.name in exc.message
            if rec.transfer_syntax_uid:
                assert exc.transfer_syntax == rec.transfer_syntax_uid
            assert exc.advice
        else:
            assert display_image(rg).dtype == np.uint8


def test_scan_paths_over_the_shared_folder(shared_dicom):
    from viewer.services.library import scan_paths

    result = scan_paths([str(shared_dicom)])
    names = {Path(r.path).name for r in result.index.records()}
    assert {"RG1_J2KI.dcm", "RG3_RLE.dcm", "jpeg-baseline.dcm", "966_fixed.dcm"} <= names
    by_name = {Path(p.path).name: p for p in result.problems}
    if not _has_libjpeg():
        jply = by_name["RG2_JPLY_fixed.dcm"]
        assert jply.transfer_syntax == "1.2.840.10008.1.2.4.51" and "pylibjpeg-libjpeg" in jply.advice
    assert "index.csv" not in names and result.files_seen >= 27


def test_reduced_thumbnail_keeps_monochrome1_bone_bright(shared_dicom, tmp_path):
    from viewer.services.thumbnails import ThumbnailStore

    rec = scan_file(shared_dicom / "RG3_J2KR.dcm")
    thumb = ThumbnailStore(tmp_path, size=128).make(rec)
    assert thumb.shape == (128, 128)
    band = (0.35, 0.55)
    assert _box(thumb, *band, 0.0, 0.15) > 230  # collimated edge white
    assert _box(thumb, *band, 0.45, 0.55) > _box(thumb, *band, 0.30, 0.40) + 60  # leg above air
