"""A record knows its source once (``InstanceRecord.source``), and ``!`` in a folder's, a file's
or a zip member's name never confuses it: scanning, decoding, analysing, the CSV's ``file``
column, the history and ``radview analyze --masks`` name the right file."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import dicom_factory
from tests.inference.tiny_models import tiny_models_dir  # noqa: F401
from viewer.cli import analyze_main
from viewer.dicom.scan import LoadProblem, source_text, split_source
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_inputs import input_from_record
from viewer.services.export import result_rows
from viewer.services.history import HistoryStore
from viewer.services.library import load_image, scan_paths


def _pixels(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(600, 3000, (96, 112)).astype(np.uint16)
    img[19:-19, 14:52] = 300
    return img


@pytest.fixture
def bang(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``st!dy/img!1.dcm``, ``st!dy/pic!2.png`` and ``st!dy/arch!ive.zip`` holding
    ``in!ner/x!3.dcm``."""
    folder = tmp_path / "data" / "st!dy"
    dicom_factory.write_dicom(folder / "img!1.dcm", _pixels(1), bits_stored=12,
                              BodyPartExamined="CHEST", InstanceNumber=1)
    cv2.imwrite(str(folder / "pic!2.png"), (_pixels(2) >> 4).astype(np.uint8))
    member = tmp_path / "member.dcm"
    dicom_factory.write_dicom(member, _pixels(3), bits_stored=12, BodyPartExamined="CHEST",
                              InstanceNumber=3)
    archive = folder / "arch!ive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(member, "in!ner/x!3.dcm")
    member.unlink()
    return folder, archive, tmp_path / "out"


def _records(folder: Path) -> dict[str, object]:
    scan = scan_paths([str(folder)], workers=1)
    assert not scan.problems, [p.reason for p in scan.problems]
    return {Path(r.member or r.path).name: r for r in scan.index.records() if r.is_image}


def test_split_source_reads_back_every_source(bang: tuple[Path, Path, Path]) -> None:
    folder, archive, _ = bang
    cases = {
        str(folder / "img!1.dcm"): (str(folder / "img!1.dcm"), None),
        source_text(str(archive), "in!ner/x!3.dcm"): (str(archive), "in!ner/x!3.dcm"),
        str(folder / "gone!.dcm"): (str(folder / "gone!.dcm"), None),  # not there: as it is
        "/nowhere/a!b": ("/nowhere/a!b", None),
    }
    for text, parts in cases.items():
        assert split_source(text) == parts, text
    assert source_text("/x.dcm") == "/x.dcm" and source_text("/a.zip", "m.dcm") == "/a.zip!m.dcm"
    problem = LoadProblem(str(archive), "damaged", member="in!ner/y.dcm")
    assert problem.source == f"{archive}!in!ner/y.dcm"


def test_scan_decode_analyse_and_history_name_the_right_file(
        bang: tuple[Path, Path, Path], tiny_models_dir: Path, tmp_path: Path) -> None:
    folder, archive, _ = bang
    recs = _records(folder)
    assert set(recs) == {"img!1.dcm", "pic!2.png", "x!3.dcm"}
    dcm, png, inner = recs["img!1.dcm"], recs["pic!2.png"], recs["x!3.dcm"]
    assert (dcm.path, dcm.member, dcm.source) == (str(folder / "img!1.dcm"), None, str(folder / "img!1.dcm"))
    assert (inner.path, inner.member) == (str(archive), "in!ner/x!3.dcm")
    assert inner.source == f"{archive}!in!ner/x!3.dcm"
    assert png.sop_instance_uid == f"file:{png.source}"
    service = AnalysisService(ModelRegistry([tiny_models_dir]), SessionPool(1))
    with HistoryStore(tmp_path / "h.sqlite") as store:
        run = store.new_run()
        for rec in (dcm, png, inner):
            assert split_source(rec.source) == (rec.path, rec.member)
            assert load_image(rec).source == rec.source
            result = service.analyse(input_from_record(rec))
            assert result.source == rec.source
            assert {row["file"] for row in result_rows(result)} == {rec.source}
            store.record(run, result, overlays=False)
        stored = {e.source for e in store.entries()}
    assert stored == {dcm.source, png.source, inner.source}
    # what the window's history does to reopen an entry: the file, or the zip holding it
    assert {split_source(s)[0] for s in stored} == {dcm.path, png.path, str(archive)}


def test_analyze_masks_and_csv_name_the_right_files(bang: tuple[Path, Path, Path],
                                                    tiny_models_dir: Path) -> None:
    folder, archive, out = bang
    code = analyze_main([str(folder), "--models-dir", str(tiny_models_dir), "--models",
                         "body_region,lungs", "--masks", str(out / "masks"),
                         "--out", str(out / "r.csv"), "--quiet", "--workers", "1"])
    assert code == 0
    # "<stem>_<model>.png" from each file's own name (x!3, not "3" after the last "!")
    names = sorted(p.name for p in (out / "masks").iterdir())
    assert names == ["img!1_lungs.png", "pic!2_lungs.png", "x!3_lungs.png"]
    with (out / "r.csv").open(newline="") as fh:
        files = {row["file"] for row in csv.DictReader(fh)}
    assert files == {str(folder / "img!1.dcm"), str(folder / "pic!2.png"),
                     f"{archive}!in!ner/x!3.dcm"}
