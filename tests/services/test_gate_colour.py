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
