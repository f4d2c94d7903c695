"""The gate's modality rule: a DICOM image of a non-projection modality (CT, MR, US, ...) is
"not a radiograph" whatever the network says, and the chest models do not run on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import UID

from tests import dicom_factory
from tests.inference.tiny_models import make_model_set
from viewer.dicom.load import radiograph_from_dataset, read_dataset
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_inputs import input_from_radiograph
from viewer.services.analysis_types import NOT_PROJECTION_RADIOGRAPHY, AnalysisInput

CT_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> AnalysisService:
    folder = make_model_set(tmp_path_factory.mktemp("models") / "modality")
    return AnalysisService(ModelRegistry([Path(folder)]), SessionPool(1))


def _input(path: Path) -> AnalysisInput:
    """The analysis input of a DICOM file, read as the viewer reads it."""
    return input_from_radiograph(radiograph_from_dataset(read_dataset(str(path)), source=str(path)))


def _analyse(service: AnalysisService, path: Path):
    return service.analyse(_input(path))


def test_same_pixels_pass_as_cr_and_are_refused_as_ct(service: AnalysisService, tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 4096, (96, 80)).astype(np.uint16)
    cr = dicom_factory.write_dicom(tmp_path / "cr.dcm", pixels, bits_stored=12)
    ct = dicom_factory.write_dicom(tmp_path / "ct.dcm", pixels, bits_stored=12,
                                   sop_class=CT_STORAGE, Modality="CT")
    ok = _analyse(service, cr)
    assert ok.gate is not None and ok.gate.region == "chest"
    assert ok.result("pneumonia").status == "ok"
    refused = _analyse(service, ct)
    assert refused.gate is not None and refused.gate.region == "unknown"
    assert refused.gate.unknown_reason == "DICOM modality CT: not a projection radiograph"
    assert {r.status for r in refused.results if r.model_id != "body_region"} == {"out_of_scope"}
    forced = service.analyse(_input(ct), force=True)
    assert forced.result("pneumonia").status == "ok" and forced.result("pneumonia").forced


def test_radiograph_modalities_are_left_to_the_network() -> None:
    assert {"CR", "DX", "RG", "MG", "XA", "RF", "OT", "SC", ""}.isdisjoint(NOT_PROJECTION_RADIOGRAPHY)
    assert {"CT", "MR", "US", "NM", "PT"} <= NOT_PROJECTION_RADIOGRAPHY


def test_real_ct_slice_is_refused(service: AnalysisService, shared_dicom: Path) -> None:
    # A real CT slice (implicit VR, no file meta) from the shared corpus.
    res = _analyse(service, shared_dicom / "broken" / "54-implicit-file-meta-info.dcm")
    assert res.gate is not None and res.gate.region == "unknown"
    assert "modality CT" in (res.gate.unknown_reason or "")
