"""The committed body-region gate on out-of-distribution inputs and on real DICOM files.

Rule from the manifest (docs/MODELS.md): "unknown" when energy = -logsumexp(logits) exceeds
``ood.threshold`` or the temperature-scaled top-class probability is below
``ood.confidence_floor``. The scikit-image photographs were never used in training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from viewer.core.preprocess import InputSpec, prepare_input, to_gray_u8

ort = pytest.importorskip("onnxruntime")
skdata = pytest.importorskip("skimage.data")

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "models" / "body_region.json"
DICOM = (REPO / ".." / "shared" / "data" / "dicom").resolve()
# Measured failures of the committed gate (see models/body_region.md), kept visible as strict
# xfails so that a retrained gate that fixes them turns the test red until this list is updated.
_KNOWN_MISSES = {"rocket": "taken for a hand (calibrated 1.0)",
                 "immunohistochemistry": "taken for a chest (calibrated 0.997)"}
PHOTOS = [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=_KNOWN_MISSES[n]))
          if n in _KNOWN_MISSES else n
          for n in ("astronaut", "camera", "coffee", "chelsea", "rocket", "horse", "page", "brick",
                    "grass", "gravel", "clock", "coins", "hubble_deep_field", "immunohistochemistry",
                    "retina")]


@pytest.fixture(scope="module")
def gate():  # noqa: ANN201
    if not MANIFEST.exists():
        pytest.skip("body_region model not committed")
    m = json.loads(MANIFEST.read_text())
    sess = ort.InferenceSession(str(MANIFEST.parent / m["file"]), providers=["CPUExecutionProvider"])
    spec = InputSpec.from_manifest(m["input"])

    def verdict(display: np.ndarray) -> tuple[str, float]:
        logits = sess.run(["logits"], {"input": prepare_input(display, spec)})[0][0].astype(np.float64)
        energy = -(logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        z = logits / m["calibration"]["temperature"]
        p = np.exp(z - z.max())
        p /= p.sum()
        if energy > m["ood"]["threshold"] or p.max() < m["ood"]["confidence_floor"]:
            return "unknown", float(p.max())
        return m["labels"][int(p.argmax())], float(p.max())

    return verdict


@pytest.mark.parametrize("name", PHOTOS)
def test_natural_photographs_are_rejected(gate, name: str) -> None:  # noqa: ANN001
    assert gate(to_gray_u8(np.asarray(getattr(skdata, name)())))[0] == "unknown"


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "black", "white", "grey"])
def test_noise_and_blank_frames_are_rejected(gate, kind: str) -> None:  # noqa: ANN001
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


@pytest.mark.parametrize("name", ["RG1_J2KI.dcm", "RG1_JLSN.dcm", "966_fixed.dcm"])
def test_real_dicom_chests_pass_as_chest(gate, name: str) -> None:  # noqa: ANN001
    assert gate(_dicom_display(name))[0] == "chest"


@pytest.mark.parametrize("name", ["RG2_J2KI.dcm", "RG2_JLSL.dcm", "jpeg-baseline.dcm"])
def test_hip_and_canine_limb_are_not_a_confident_hand_or_knee(gate, name: str) -> None:  # noqa: ANN001
    assert gate(_dicom_display(name))[0] in ("other", "unknown")
