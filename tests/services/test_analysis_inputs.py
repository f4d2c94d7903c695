"""Library records -> AnalysisInput: display image and identifiers."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

import cv2
import numpy as np

from viewer.core.windowing import display_image
from viewer.services.analysis_inputs import input_from_record
from viewer.services.library import load_image, scan_paths


def _record(path: Path):
    records = scan_paths([str(path)], workers=1).index.records()
    assert len(records) == 1
    return records[0]


def test_dicom_uses_sop_instance_uid_and_header_tags(make_dicom: Callable[..., Path]) -> None:
    pixels = (np.arange(50 * 40, dtype=np.uint16).reshape(50, 40) * 2) % 4096
    path = make_dicom("cr.dcm", pixels, bits_stored=12, BodyPartExamined="CHEST",
                      ViewPosition="PA", WindowCenter=2048, WindowWidth=4096)
    rec = _record(path)
    inp = input_from_record(rec)
    assert inp.image_id == rec.sop_instance_uid == inp.sop_instance_uid != ""
    assert (inp.body_part_examined, inp.view_position) == ("CHEST", "PA")
    np.testing.assert_array_equal(inp.display, display_image(load_image(rec)))
    assert inp.display.dtype == np.uint8 and inp.display.shape == (50, 40)
    assert inp.source == str(path)


def test_jpeg_gets_a_stable_content_id(tmp_path: Path) -> None:
    img = (np.arange(30 * 20) % 256).astype(np.uint8).reshape(30, 20)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(a), img)
    cv2.imwrite(str(b), img)
    ia, ib = input_from_record(_record(a)), input_from_record(_record(b))
    assert ia.image_id.startswith("sha:") and ia.image_id == ib.image_id
    assert ia.sop_instance_uid is None and ia.body_part_examined is None
    np.testing.assert_array_equal(ia.display, img)
    cv2.imwrite(str(b), 255 - img)
    assert input_from_record(_record(b)).image_id != ia.image_id
