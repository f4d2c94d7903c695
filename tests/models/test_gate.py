"""The committed body-region gate on out-of-distribution inputs and on real DICOM files.

Rule from the manifest (docs/MODELS.md): "unknown" when the image is mostly colour (above
``ood.max_colour_fraction``), when energy = -logsumexp(logits) exceeds ``ood.threshold`` or when
the temperature-scaled top-class probability is below ``ood.confidence_floor``. The verdicts come
from the viewer's own analysis service on the committed ONNX file. The scikit-image photographs
were never used in training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from viewer.core.preprocess import to_gray_u8
from viewer.core.radiograph import Radiograph

ort = pytest.importorskip("onnxruntime")
skdata = pytest.importorskip("skimage.data")

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "models" / "body_region.json"
DICOM = (REPO / ".." / "shared" / "data" / "dicom").resolve()
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "horse", "page", "brick", "grass",
          "gravel", "clock", "coins", "hubble_deep_field", "immunohistochemistry", "retina")
@pytest.fixture(scope="module")
def gate():
    if not MANIFEST.exists():
        pytest.skip("body_region model not committed")
    from viewer.inference.registry import ModelRegistry
    from viewer.inference.sessions import SessionPool
    from viewer.services.analysis import AnalysisService
    from viewer.services.analysis_inputs import input_from_radiograph

    service = AnalysisService(ModelRegistry([MANIFEST.parent]), SessionPool(1))

    def verdict(image: np.ndarray) -> tuple[str, float]:
        """The gate's answer for an 8-bit grey or RGB(A) image opened as a PNG would be."""
        colour = image.ndim == 3
        rg = Radiograph(pixels=np.ascontiguousarray(image[..., :3]) if colour else image,
                        photometric="RGB" if colour else "MONOCHROME2")
        res = service.analyse(input_from_radiograph(rg, "test.png", plain=True),
                              models={"body_region"}, heatmaps=False)
        assert res.gate is not None
        return res.gate.region, res.gate.confidence

    return verdict


@pytest.mark.parametrize("name", PHOTOS)
def test_natural_photographs_are_rejected(gate, name: str) -> None:
    assert gate(np.asarray(getattr(skdata, name)()))[0] == "unknown"


@pytest.mark.parametrize("name", PHOTOS)
def test_network_alone_rejects_the_grey_copies(gate, name: str) -> None:
    # Without their colour the photographs reach the network: body_region 2.0.0 refuses every
    # one by itself (1.0.0 accepted grey copies of "rocket" and "immunohistochemistry").
    assert gate(to_gray_u8(np.asarray(getattr(skdata, name)())))[0] == "unknown"


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "black", "white", "grey"])
def test_noise_and_blank_frames_are_rejected(gate, kind: str) -> None:
    rng = np.random.default_rng(7)
    frames = {
        "uniform": rng.integers(0, 256, (300, 400), dtype=np.uint8),
        "gaussian": np.clip(rng.normal(128, 40, (300, 400)), 0, 255).astype(np.uint8),
        "black": np.zeros((300, 400), np.uint8),
        "white": np.full((300, 400), 255, np.uint8),
        "grey": np.full((300, 400), 128, np.uint8),
    }
    assert gate(frames[kind])[0] == "unknown"


def _dicom_display(name: str) -> np.ndarray:
    path = DICOM / name
    if not path.exists():
        pytest.skip("shared DICOM samples are not available")
    from viewer.core.windowing import display_image
    from viewer.dicom.load import load_radiograph

    return to_gray_u8(np.asarray(display_image(load_radiograph(path))))


@pytest.mark.parametrize("name", ["RG1_J2KI.dcm", "RG1_JLSN.dcm", "966_fixed.dcm",
                                  # 16-bit DX, stored upside down and inverted (1.0.0 refused it)
                                  "JPEG2KLossless_1s_1f_u_16_16.dcm"])
def test_real_dicom_chests_pass_as_chest(gate, name: str) -> None:
    assert gate(_dicom_display(name))[0] == "chest"


def test_real_dicom_hand_passes_as_hand(gate) -> None:
    assert gate(_dicom_display("NM_Kakadu44_SOTmarkerincons.dcm"))[0] == "hand"


@pytest.mark.parametrize("name", ["RG2_J2KI.dcm", "RG2_JLSL.dcm", "RG3_J2KR.dcm", "RG3_RLE.dcm",
                                  "jpeg-baseline.dcm"])
def test_hip_lower_leg_and_canine_limb_get_no_region_model(gate, name: str) -> None:
    assert gate(_dicom_display(name))[0] in ("other", "unknown")


def test_chest_has_its_own_looser_energy_threshold() -> None:
    """Chest (the region with models) keeps 99.5 % of its validation images with its own
    threshold; it may only loosen the global rule, and chest-looking photographs stay refused
    (test_natural_photographs_are_rejected runs with it)."""
    import json

    if not MANIFEST.exists():
        pytest.skip("body_region model not committed")
    ood = json.loads(MANIFEST.read_text())["ood"]
    per = ood.get("class_thresholds", {})
    assert set(per) <= {"chest"}
    if per:
        assert per["chest"] > ood["threshold"] and per["chest"] < -2.0
