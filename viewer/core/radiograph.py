"""The Radiograph value object: one decoded frame plus what is needed to display it.

Qt-free and pydicom-free: ``viewer.dicom`` builds it from a dataset, ``viewer.services`` builds
it from PNG/JPEG files, and the display pipeline in :mod:`viewer.core.windowing` turns it into a
display image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SpacingKind = Literal["PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"]


@dataclass(frozen=True)
class ModalityLUT:
    """(0028,1052) Rescale Intercept / (0028,1053) Rescale Slope, or a (0028,3000) Modality LUT
    Sequence table (``lut`` with ``first_mapped`` and ``bits``). Identity by default."""

    slope: float = 1.0
    intercept: float = 0.0
    lut: np.ndarray | None = None
    first_mapped: int = 0
    units: str = ""


@dataclass(frozen=True)
class VOI:
    """One VOI transform offered by the file or computed by the viewer.

    Either a window (``center``/``width``, (0028,1050)/(0028,1051), with
    (0028,1056) VOI LUT Function) or a (0028,3010) VOI LUT Sequence table (``lut``,
    ``first_mapped``, ``bits``).
    """

    explanation: str
    center: float | None = None
    width: float | None = None
    function: str = "LINEAR"
    lut: np.ndarray | None = None
    first_mapped: int = 0
    bits: int = 16
    origin: str = "file"  # "file", "auto", "user"


@dataclass(frozen=True)
class Radiograph:
    """A single displayable frame.

    Attributes
    ----------
    pixels
        Stored values, row-major: ``(rows, cols)`` for greyscale, ``(rows, cols, 3)`` uint8 RGB
        for colour (YBR and PALETTE COLOR are converted to RGB by the adapter).
    photometric
        (0028,0004) Photometric Interpretation of ``pixels`` after any colour conversion
        ("MONOCHROME1", "MONOCHROME2" or "RGB").
    bits_stored
        (0028,0101) Bits Stored.
    modality_lut, vois
        The modality transform and every VOI the file carries (may be empty).
    spacing_mm, spacing_kind
        Row and column spacing in mm and the attribute it came from; ``None`` when unknown.
    patient_age_years
        Age at the study from (0010,1010) Patient's Age or the birth and study dates; used only
        to warn when a model's intended population does not cover the patient.
    study_date
        ISO date (YYYY-MM-DD) the image was taken, from the Study/Acquisition/Content/Series
        Date; "" when unknown (PNG/JPEG, de-identified). Used only for a model's
        ``study_date_from`` caution.
    """

    pixels: np.ndarray
    photometric: str = "MONOCHROME2"
    bits_stored: int = 8
    signed: bool = False
    modality_lut: ModalityLUT = field(default_factory=ModalityLUT)
    vois: tuple[VOI, ...] = ()
    spacing_mm: tuple[float, float] | None = None
    spacing_kind: SpacingKind | None = None
    frame_index: int = 0
    frame_count: int = 1
    source: str = ""
    sop_instance_uid: str = ""
    modality: str = ""
    body_part: str = ""
    view_position: str = ""
    patient_age_years: float | None = None
    study_date: str = ""
    # (0020,0020) Patient Orientation: the patient directions of the row (towards the image's
    # right) and of the column (towards its bottom), e.g. ("L", "F"); None when not given.
    patient_orientation: tuple[str, str] | None = None

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def cols(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def is_colour(self) -> bool:
        return self.pixels.ndim == 3

    @property
    def is_inverted(self) -> bool:
        """MONOCHROME1: minimum stored value is white, so display inverts after the VOI step."""
        return self.photometric == "MONOCHROME1"
