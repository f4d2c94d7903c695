"""Turn library records (DICOM, PNG/JPEG) into :class:`AnalysisInput` for the analysis service.

For DICOM, the model input is the display image a reader sees by default (modality LUT ->
default VOI window -> MONOCHROME1 inversion, :func:`viewer.core.windowing.display_image`). A PNG
or JPEG is already a display image: its grey values go to the model unchanged (no auto window),
exactly as the training images did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from viewer.core.preprocess import colour_fraction, to_gray_u8
from viewer.core.radiograph import Radiograph
from viewer.core.windowing import display_image
from viewer.dicom.scan import InstanceRecord
from viewer.services.analysis_types import AnalysisInput
from viewer.services.library import load_image

__all__ = ["content_id", "input_from_radiograph", "input_from_record"]


def content_id(rg: Radiograph) -> str:
    """A stable id for an image without (0008,0018) SOP Instance UID: hash of its pixels."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(rg.pixels.shape).encode())
    digest.update(rg.pixels.tobytes())
    return "sha:" + digest.hexdigest()


def input_from_radiograph(rg: Radiograph, source: str = "", *, plain: bool = False) -> AnalysisInput:
    """Display image and identifiers of a decoded radiograph.

    ``plain``: the radiograph came from a PNG/JPEG; use its grey values as they are.
    """
    uid = rg.sop_instance_uid or None
    return AnalysisInput(
        display=to_gray_u8(rg.pixels) if plain else display_image(rg),
        image_id=uid or content_id(rg),
        source=source or rg.source,
        body_part_examined=rg.body_part or None,
        view_position=rg.view_position or None,
        sop_instance_uid=uid,
        patient_age_years=rg.patient_age_years,
        colour_fraction=colour_fraction(rg.pixels) if rg.is_colour else 0.0,
        modality=rg.modality,
        study_date=rg.study_date,
    )


def input_from_record(record: InstanceRecord,
                      load: Callable[[InstanceRecord], Radiograph] = load_image) -> AnalysisInput:
    """Decode a library record (raises the library's ``LoadError`` with a user message).

    ``load``: the decoder to use, e.g. a :class:`~viewer.services.decode_pool.DecodePool`'s
    ``load_image``, which decodes compressed files in worker processes so that a decoder's
    native crash costs one file, not the batch."""
    return input_from_radiograph(load(record), record.source, plain=record.kind != "dicom")
