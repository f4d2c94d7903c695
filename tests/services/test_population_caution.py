"""Patient age and study date against a model's population: DICOM parsing, manifest range and
start date, caution row."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from collections.abc import Callable

import numpy as np
import pytest
from pydicom.dataset import Dataset

from tests.inference.tiny_models import make_model_set
from viewer.dicom.attributes import patient_age_years, study_date
from viewer.inference.manifest import load_manifest
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_types import age_caution, date_outside
from viewer.services.export import CSV_FIELDS, result_rows, write_csv
from tests.services.test_analysis import _input


def _ds(**kw: str) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.parametrize(("kw", "years"), [
    ({"PatientAge": "045Y"}, 45.0),
    ({"PatientAge": "018M"}, 1.5),
    ({"PatientAge": "026W"}, 26 * 7 / 365.25),
    ({"PatientAge": "010D"}, 10 / 365.25),
    ({"PatientBirthDate": "20200301", "StudyDate": "20230301"}, 3.0),
    ({"PatientAge": "bad", "PatientBirthDate": "19800101", "ContentDate": "20000101"}, 20.0),
])
def test_patient_age_from_header(kw: dict[str, str], years: float) -> None:
    assert patient_age_years(_ds(**kw)) == pytest.approx(years, abs=0.01)


@pytest.mark.parametrize("kw", [{}, {"PatientAge": "45"}, {"PatientBirthDate": "20200301"},
                                {"PatientBirthDate": "20201340", "StudyDate": "20230101"},
                                {"PatientBirthDate": "20240101", "StudyDate": "20230101"}])
def test_unknown_or_invalid_age_is_none(kw: dict[str, str]) -> None:
    assert patient_age_years(_ds(**kw)) is None


def test_age_caution_text_and_bounds() -> None:
    assert age_caution(None, (18, None)) is None
    assert age_caution(40, None) is None
    assert age_caution(18, (18, None)) is None and age_caution(6, (1, 6)) is None
    msg = age_caution(3, (18, None), "adult")
    assert msg is not None and "3.0 years" not in msg and "3 years" in msg
    assert "adult" in msg and "18 years and older" in msg
    assert "1.0 years to 6 years" in (age_caution(40, (1, 6)) or "")


@pytest.fixture(scope="module")
def adult_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_model_set(tmp_path_factory.mktemp("models") / "adult")
    path = folder / "pneumonia.json"
    doc = json.loads(path.read_text())
    doc.update(population="adult (test)", age_years=[18, None])
    path.write_text(json.dumps(doc))
    return folder


def test_child_on_an_adult_model_is_analysed_with_a_caution(adult_models: Path, tmp_path: Path) -> None:
    service = AnalysisService(ModelRegistry([adult_models]), SessionPool(1))
    child = service.analyse(_input(patient_age_years=4.0))
    adult = service.analyse(_input(patient_age_years=40.0))
    unknown = service.analyse(_input())
    clf = child.result("pneumonia")
    assert clf.status == "ok" and clf.caution and "adult (test)" in clf.caution
    assert child.result("body_region").caution is None  # the gate has no population
    assert child.result("lungs").caution is None  # no age range in its manifest
    assert adult.result("pneumonia").caution is None and unknown.result("pneumonia").caution is None
    out = write_csv(result_rows(child), tmp_path / "r.csv")
    rows = list(csv.DictReader(out.open()))
    assert "caution" in CSV_FIELDS
    assert [r["caution"] for r in rows if r["model_id"] == "pneumonia"] == [clf.caution]


def _unavailable_reason(models: Path, dest: Path, key: str, value: object) -> str:
    """Copy the pneumonia model with ``key`` set to ``value``; the reason it is unavailable."""
    doc = json.loads((models / "pneumonia.json").read_text())
    (dest / "pneumonia.onnx").write_bytes((models / "pneumonia.onnx").read_bytes())
    doc[key] = value
    (dest / "pneumonia.json").write_text(json.dumps(doc))
    entry = load_manifest(dest / "pneumonia.json")
    assert not entry.available
    return entry.reason or ""


@pytest.mark.parametrize("bad", [[18], "adult", [30, 10]])
def test_bad_age_range_makes_the_model_unavailable(adult_models: Path, tmp_path: Path, bad: object) -> None:
    assert "age_years" in _unavailable_reason(adult_models, tmp_path, "age_years", bad)


def test_committed_adult_and_paediatric_models_declare_ages() -> None:
    models = Path(__file__).resolve().parents[2] / "models"
    covid = load_manifest(models / "covid.json", verify_checksum=False).manifest
    pneu = load_manifest(models / "pneumonia.json", verify_checksum=False).manifest
    assert covid is not None and covid.age_range == (18.0, None)
    assert pneu is not None and pneu.age_range == (1.0, 6.0)


def test_age_reaches_the_analysis_input_from_dicom(make_dicom: Callable[..., Path]) -> None:
    from viewer.services.analysis_inputs import input_from_record
    from viewer.services.library import scan_paths

    pixels = np.arange(30 * 20, dtype=np.uint16).reshape(30, 20)
    path = make_dicom("child.dcm", pixels, bits_stored=12, PatientAge="004Y")
    rec = scan_paths([str(path)], workers=1).index.records()[0]
    assert input_from_record(rec).patient_age_years == pytest.approx(4.0)


COVID_START = {"date": "2019-12-01", "why": "COVID-19 was first described in December 2019"}


@pytest.mark.parametrize(("kw", "day"), [
    ({"StudyDate": "20040825"}, "2004-08-25"),
    ({"StudyDate": "", "AcquisitionDate": "20210102"}, "2021-01-02"),
    ({"StudyDate": "20041340", "ContentDate": "20200315", "SeriesDate": "19990101"}, "2020-03-15"),
    ({}, None),
])
def test_study_date_from_header(kw: dict[str, str], day: str | None) -> None:
    got = study_date(_ds(**kw))
    assert (got.isoformat() if got else None) == day


def test_date_outside_text_and_bounds() -> None:
    start = (COVID_START["date"], COVID_START["why"])
    assert date_outside("", start) is None and date_outside("2004-08-25", None) is None
    assert date_outside("2019-12-01", start) is None and date_outside("2021-05-01", start) is None
    msg = date_outside("2004-08-25", start)
    assert msg is not None and "2004-08-25" in msg and "December 2019" in msg


@pytest.fixture(scope="module")
def dated_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_model_set(tmp_path_factory.mktemp("models") / "dated")
    path = folder / "pneumonia.json"
    doc = json.loads(path.read_text())
    doc.update(population="adult (test)", age_years=[18, None], study_date_from=COVID_START)
    path.write_text(json.dumps(doc))
    return folder


def test_old_film_is_outside_the_models_data_unless_run_anyway(dated_models: Path,
                                                                tmp_path: Path) -> None:
    """Issue 14: a film dated before the model's population is not "a positive with a
    caution" but outside the model's data: no finding, a reason, and "Run anyway" marked."""
    service = AnalysisService(ModelRegistry([dated_models]), SessionPool(1))
    old = service.analyse(_input(study_date="2004-08-25", patient_age_years=40.0))
    new = service.analyse(_input(study_date="2021-03-01", patient_age_years=40.0))
    undated = service.analyse(_input())
    child = service.analyse(_input(study_date="2021-03-01", patient_age_years=4.0))
    clf = old.result("pneumonia")
    assert clf.status == "outside_data" and clf.label is None and not clf.probabilities
    assert clf.reason and "outside this model's data" in clf.reason and "2004-08-25" in clf.reason
    assert new.result("pneumonia").status == "ok" and new.result("pneumonia").caution is None
    assert undated.result("pneumonia").status == "ok"
    assert old.result("lungs").status == "ok"  # no start date in its manifest
    assert child.result("pneumonia").status == "ok" and "adult (test)" in child.result("pneumonia").caution
    forced = service.analyse(_input(study_date="2004-08-25", patient_age_years=4.0),
                             force={"pneumonia"})
    run = forced.result("pneumonia")
    assert run.status == "ok" and run.forced and run.label is not None
    assert "2004-08-25" in run.caution and "run anyway" in run.caution and "adult (test)" in run.caution
    rows = list(csv.DictReader(write_csv(result_rows(old), tmp_path / "r.csv").open()))
    row = next(r for r in rows if r["model_id"] == "pneumonia")
    assert row["status"] == "outside_data" and row["label"] == "" and "2004-08-25" in row["reason"]


@pytest.mark.parametrize("bad", ["2019-12-01", {"date": "2019-13-01", "why": "x"}, {"date": "2019-12-01"}])
def test_bad_start_date_makes_the_model_unavailable(dated_models: Path, tmp_path: Path, bad: object) -> None:
    assert "study_date_from" in _unavailable_reason(dated_models, tmp_path, "study_date_from", bad)


def test_committed_covid_model_declares_its_start_date() -> None:
    models = Path(__file__).resolve().parents[2] / "models"
    covid = load_manifest(models / "covid.json", verify_checksum=False).manifest
    assert covid is not None and covid.study_date_from is not None
    assert covid.study_date_from[0] == "2019-12-01"


def test_study_date_reaches_the_analysis_input_from_dicom(make_dicom: Callable[..., Path]) -> None:
    from viewer.services.analysis_inputs import input_from_record
    from viewer.services.library import scan_paths

    pixels = np.arange(30 * 20, dtype=np.uint16).reshape(30, 20)
    path = make_dicom("old.dcm", pixels, bits_stored=12, StudyDate="20040825")
    rec = scan_paths([str(path)], workers=1).index.records()[0]
    assert input_from_record(rec).study_date == "2004-08-25"
