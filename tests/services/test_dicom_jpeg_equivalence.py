"""The viewer feeds a DICOM file and the equivalent image file to a model identically.

The equivalent of a DICOM radiograph is its display image (modality LUT, default VOI window,
MONOCHROME1 inversion) saved as an 8-bit grey picture. Through the same code paths the UI and
``radview analyze`` use (scan -> record -> ``input_from_record`` -> ``prepare_input`` with a
committed model's input spec), a lossless PNG must give the model a bit-identical tensor, and a
JPEG exactly the tensor of its decoded pixels (JPEG itself is lossy, so it only comes close to
the DICOM's).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from viewer.core.preprocess import InputSpec, prepare_input
from viewer.services.analysis_inputs import input_from_record
from viewer.services.library import scan_paths

REPO = Path(__file__).resolve().parents[2]


def _record(path: Path):
    records = scan_paths([str(path)], workers=1).index.records()
    assert len(records) == 1
    return records[0]


def _specs() -> list[InputSpec]:
    specs = [InputSpec.from_manifest(json.loads(p.read_text())["input"])
             for p in sorted((REPO / "models").glob("*.json"))]
    return specs or [InputSpec()]


@pytest.mark.parametrize("name", ["RG1_JLSN.dcm", "RG3_RLE.dcm", "966_fixed.dcm"])
def test_dicom_and_equivalent_image_reach_the_model_identically(
        shared_dicom: Path, tmp_path: Path, name: str) -> None:
    dicom_input = input_from_record(_record(shared_dicom / name))
    display = dicom_input.display
    assert display.dtype == np.uint8 and display.ndim == 2

    png, jpg = tmp_path / "same.png", tmp_path / "same.jpg"
    assert cv2.imwrite(str(png), display)
    assert cv2.imwrite(str(jpg), display, [cv2.IMWRITE_JPEG_QUALITY, 95])
    png_input = input_from_record(_record(png))
    jpg_input = input_from_record(_record(jpg))
    np.testing.assert_array_equal(png_input.display, display)
    jpeg_pixels = cv2.imread(str(jpg), cv2.IMREAD_GRAYSCALE)

    for spec in _specs():
        from_dicom = prepare_input(display, spec)
        np.testing.assert_array_equal(prepare_input(png_input.display, spec), from_dicom)
        from_jpeg = prepare_input(jpg_input.display, spec)
        np.testing.assert_array_equal(from_jpeg, prepare_input(jpeg_pixels, spec))
        # lossy, but the same picture: within a few grey levels after resizing
        assert np.abs(from_jpeg - from_dicom).mean() * spec.std * 255 < 2.0
