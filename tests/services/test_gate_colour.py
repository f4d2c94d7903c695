"""The gate's colour rule: a mostly colour image is "not a radiograph" before the network runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.inference.tiny_models import make_model_set
from viewer.core.preprocess import colour_fraction
from viewer.core.radiograph import Radiograph
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_inputs import input_from_radiograph


def test_colour_fraction_counts_clearly_coloured_pixels() -> None:
    grey = np.full((40, 50), 90, np.uint8)
    assert colour_fraction(grey) == 0.0
    rgb = np.repeat(grey[..., None], 3, axis=2)
    assert colour_fraction(rgb) == 0.0
    rgb[:10, :, 0] = 200  # a red band over 10 of 40 rows
    assert colour_fraction(rgb) == pytest.approx(0.25)
    rgb[:10, :, 0] = 90 + 23  # below the chroma step: still grey
    assert colour_fraction(rgb) == 0.0
    big = np.zeros((3000, 3000, 3), np.uint8)
    big[:, :1500, 1] = 255
    assert colour_fraction(big) == pytest.approx(0.5, abs=0.01)  # sampled on a grid
    assert colour_fraction(np.zeros((0, 0, 3), np.uint8)) == 0.0
    assert colour_fraction(np.dstack([np.zeros((4, 4)), np.ones((4, 4)), np.zeros((4, 4))])) == 1.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> AnalysisService:
    folder = make_model_set(tmp_path_factory.mktemp("models") / "colour")
    path = folder / "body_region.json"
    doc = json.loads(path.read_text())
    doc["ood"]["max_colour_fraction"] = 0.2
    path.write_text(json.dumps(doc))
    return AnalysisService(ModelRegistry([Path(folder)]), SessionPool(1))


def _rgb(coloured_rows: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.repeat(rng.integers(0, 255, (50, 60), dtype=np.uint8)[..., None], 3, axis=2)
    img[:coloured_rows, :, 2] = 255
    img[:coloured_rows, :, 0] = 0
    return img


def test_colour_photo_is_unknown_and_chest_models_do_not_run(service: AnalysisService) -> None:
    inp = input_from_radiograph(Radiograph(pixels=_rgb(25), photometric="RGB"), "p.png", plain=True)
    assert inp.colour_fraction == pytest.approx(0.5)
    res = service.analyse(inp)
    assert res.gate is not None and res.gate.region == "unknown"
    assert "colour image" in (res.gate.unknown_reason or "")
    assert res.result("pneumonia").status == "out_of_scope"


def test_rgb_radiograph_with_a_coloured_arrow_passes(service: AnalysisService) -> None:
    inp = input_from_radiograph(Radiograph(pixels=_rgb(3), photometric="RGB"), "p.png", plain=True)
    assert 0 < inp.colour_fraction < 0.2
    res = service.analyse(inp)
    assert res.gate is not None and res.gate.region == "chest"
    assert res.result("pneumonia").status == "ok"


def _gate_with_ood(tmp: Path, ood: dict) -> Path:
    folder = make_model_set(tmp)
    path = folder / "body_region.json"
    doc = json.loads(path.read_text())
    doc["ood"] = ood
    path.write_text(json.dumps(doc))
    return folder


@pytest.mark.parametrize(("per_class", "region"), [({"chest": -7.0}, "chest"), ({"knee": -7.0}, "unknown"),
                                                   (None, "unknown")])
def test_class_threshold_applies_to_its_top_class_only(tmp_path: Path, per_class: dict | None,
                                                       region: str) -> None:
    """The tiny gate answers chest with energy -8.0: refused by the global -9, kept by chest's
    own -7 (ood.class_thresholds), not by another class's."""
    ood: dict = {"score": "energy", "threshold": -9.0, "confidence_floor": 0.6}
    if per_class is not None:
        ood["class_thresholds"] = per_class
    service = AnalysisService(ModelRegistry([_gate_with_ood(tmp_path, ood)]), SessionPool(1))
    inp = input_from_radiograph(Radiograph(pixels=_rgb(0)[..., 0], photometric="MONOCHROME2"), "p.png", plain=True)
    res = service.analyse(inp)
    assert res.gate is not None and res.gate.region == region
    assert res.gate.energy == pytest.approx(-8.0, abs=0.01)
    if region == "unknown":
        assert res.gate.unknown_reason == "energy -8.00 above -9.00"
        assert res.result("pneumonia").status == "out_of_scope"
    else:
        assert res.result("pneumonia").status == "ok"


@pytest.mark.parametrize(("per_class", "message"), [
    ({"lung": -3.0}, "'lung' is not one of the labels"), ({"chest": "x"}, "must be a finite number"),
    ({"chest": float("nan")}, "must be a finite number"), ([-3.0], "must map labels")])
def test_malformed_class_thresholds_make_the_gate_unavailable(tmp_path: Path, per_class: object,
                                                             message: str) -> None:
    from viewer.inference.manifest import load_manifest

    folder = _gate_with_ood(tmp_path, {"score": "energy", "threshold": -3.1, "class_thresholds": per_class})
    entry = load_manifest(folder / "body_region.json")
    assert not entry.available and message in (entry.reason or "")
