"""Frozen request and result objects of the analysis service (Qt-free, no onnxruntime)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from collections.abc import Mapping

import numpy as np

from viewer import RESEARCH_NOTICE

__all__ = [
    "NOT_PROJECTION_RADIOGRAPHY",
    "age_caution",
    "OK",
    "OUT_OF_SCOPE",
    "ERROR",
    "OUT_OF_SCOPE_REASON",
    "OUTSIDE_DATA",
    "OUTSIDE_DATA_REASON",
    "date_outside",
    "AnalysisInput",
    "GateAnswer",
    "ModelResult",
    "AnalysisResult",
    "Overlay",
    "Measurement",
    "FindingResult",
    "POSITIVE",
    "NEGATIVE",
    "confidence_band",
]

OK, OUT_OF_SCOPE, ERROR = "ok", "out_of_scope", "error"
OUT_OF_SCOPE_REASON = "not analysed: outside the model's intended input"
# The model ran but the image is unlike its training data (its own applicability check, or a
# study date before the population it learnt from): no finding is reported.
OUTSIDE_DATA = "outside_data"
OUTSIDE_DATA_REASON = "outside this model's data"


def confidence_band(confidence: float, bands: Mapping[str, float]) -> str:
    """``green`` if ``confidence >= bands['green']``, ``orange`` if ``>= bands['orange']``, else ``red``."""
    if confidence >= bands.get("green", 0.9):
        return "green"
    if confidence >= bands.get("orange", 0.7):
        return "orange"
    return "red"


def _years(value: float) -> str:
    return f"{value:.1f} years" if value < 2 else f"{value:.0f} years"


# DICOM (0008,0060) Modality values that are never a projection radiograph: the models here
# were trained on CR/DX radiographs only. CR, DX, RG, MG, XA, RF, OT and SC (a scanned or
# captured film may be a radiograph) are left to the gate network.
NOT_PROJECTION_RADIOGRAPHY = frozenset({
    "CT", "MR", "US", "NM", "PT", "OCT", "OP", "OPT", "IVUS", "ES", "SM", "XC", "GM", "ECG",
    "EPS", "HD", "RTIMAGE", "RTDOSE", "RTSTRUCT", "RTPLAN", "SEG", "PX", "IO", "BMD", "DOC",
})


def age_caution(age_years: float | None, age_range: tuple[float | None, float | None] | None,
                population: str = "") -> str | None:
    """A caution when a known patient age lies outside a model's ``[min, max]`` age range.

    The model still runs (age is advisory: the header may be wrong or de-identified), but the
    result says the patient is outside the population the model was trained on.
    """
    if age_years is None or age_range is None:
        return None
    low, high = age_range
    if (low is None or age_years >= low) and (high is None or age_years <= high):
        return None
    bounds = (f"{_years(low) if low is not None else '0'} to {_years(high)}" if high is not None
              else f"{_years(low or 0)} and older")
    who = f" ({population})" if population else ""
    return (f"patient age {_years(age_years)} is outside this model's population{who}: "
            f"trained on {bounds}")


def date_outside(study_date: str, date_from: tuple[str, str] | None) -> str | None:
    """Why a film is outside a model's data by its date (``study_date_from``), or ``None``."""
    if not study_date or date_from is None or study_date >= date_from[0]:
        return None
    return f"study date {study_date} is before {date_from[0]} ({date_from[1]})"


def population_caution(inp: AnalysisInput, age_range: tuple[float | None, float | None] | None,
                       population: str) -> str | None:
    """The age caution of one model for one image (advisory: the header may be wrong). A study
    date before the model's population is not a caution but "outside this model's data"
    (:func:`date_outside`)."""
    return age_caution(inp.patient_age_years, age_range, population)


@dataclass(frozen=True)
class AnalysisInput:
    """One image to analyse.

    Attributes
    ----------
    display
        uint8 display image (grey (rows, cols) or RGB), bone bright: the DICOM display pipeline's
        output or a PNG/JPEG.
    image_id
        Stable identifier: (0008,0018) SOP Instance UID, or a content hash for PNG/JPEG.
    source
        File path (shown in exports; never logged with patient data).
    body_part_examined, view_position
        (0018,0015) Body Part Examined and (0018,5101) View Position, reported beside the gate.
    colour_fraction
        Share of clearly coloured pixels in the decoded image
        (:func:`viewer.core.preprocess.colour_fraction`); the gate calls a mostly colour image
        "not a radiograph" (``ood.max_colour_fraction``).
    patient_age_years
        Age at the study from the DICOM header (``None`` for PNG/JPEG or when absent); checked
        against each model's ``population.age_years`` range.
    modality
        (0008,0060) Modality ("" for PNG/JPEG); the gate calls an image of a modality in
        :data:`NOT_PROJECTION_RADIOGRAPHY` (CT, MR, US, ...) "not a radiograph".
    study_date
        ISO date the image was taken ("" when unknown); checked against each model's
        ``study_date_from``.
    """

    display: np.ndarray
    image_id: str
    source: str = ""
    body_part_examined: str | None = None
    view_position: str | None = None
    sop_instance_uid: str | None = None
    patient_age_years: float | None = None
    colour_fraction: float = 0.0
    modality: str = ""
    study_date: str = ""


@dataclass(frozen=True)
class GateAnswer:
    """The body-region model's answer next to what the DICOM header says."""

    region: str  # a gate label, or "unknown"
    confidence: float
    energy: float | None
    unknown_reason: str | None  # why the answer is "unknown / not a radiograph"
    body_part_examined: str | None
    view_position: str | None

    @property
    def is_unknown(self) -> bool:
        return self.unknown_reason is not None


POSITIVE, NEGATIVE = "positive", "negative"


@dataclass(frozen=True)
class Overlay:
    """One image-sized layer a model produced: a segment's mask or a class's heatmap.

    ``kind`` is ``"mask"`` (uint8 {0, 1}) or ``"heatmap"`` (float32 in [0, 1]); ``label`` is the
    segment's label (masks) or the class or finding the map explains (heatmaps); ``role`` the
    segment's declared role (``lung_field``, ``finding``, ...), ``None`` for heatmaps.
    """

    kind: str
    model_id: str
    label: str
    array: np.ndarray = field(repr=False, compare=False)
    role: str | None = None

    @property
    def key(self) -> str:
        """``<model>.<kind>.<label>``: stable within one result."""
        return f"{self.model_id}.{self.kind}.{self.label}"


@dataclass(frozen=True)
class Measurement:
    """One declared, derived number (docs/MODELS.md ``measurements``).

    ``key`` is ``<model>.<kind>[.<segment-or-role>]`` (CSV/JSON and history); ``value`` is a
    fraction in [0, 1] (``area_fraction``, ``heatmap_share``) or 1.0/0.0 (``presence``), ``None``
    when it could not be measured (e.g. no segmenter with that role ran: ``note`` says why);
    ``source`` names the segmenter whose masks a ``heatmap_share`` used.
    """

    key: str
    kind: str
    model_id: str
    label: str
    value: float | None
    unit: str = "fraction"
    source: str | None = None
    note: str = ""

    def text(self) -> str:
        if self.value is None:
            return "-"
        if self.kind == "presence":
            return "present" if self.value >= 0.5 else "absent"
        return f"{100 * self.value:.0f}%"

    def as_value(self) -> object:
        """JSON value: a rounded fraction, a boolean for presence, ``None``."""
        if self.value is None:
            return None
        if self.kind == "presence":
            return bool(self.value >= 0.5)
        return round(float(self.value), 4)


@dataclass(frozen=True)
class FindingResult:
    """One finding of a multi-label classifier: its own probability, threshold, call and band
    (the band is the confidence in the call: ``p`` when positive, ``1 - p`` when negative)."""

    label: str
    probability: float
    threshold: float
    call: str  # positive | negative
    band: str

    @property
    def positive(self) -> bool:
        return self.call == POSITIVE

    def as_row(self) -> dict[str, object]:
        return {"probability": round(self.probability, 6), "threshold": self.threshold,
                "call": self.call, "band": self.band}


@dataclass(frozen=True)
class ModelResult:
    """One model's outcome on one image. Arrays (``overlays``) are at image resolution;
    ``cams`` at activation resolution."""

    model_id: str
    model_version: str
    task: str
    status: str  # ok | out_of_scope | outside_data | error
    reason: str | None = None
    label: str | None = None
    probabilities: Mapping[str, float] = field(default_factory=dict)
    confidence: float | None = None
    band: str | None = None
    threshold: float | None = None
    positive_label: str | None = None
    forced: bool = False
    caution: str | None = None  # e.g. the patient's age is outside the model's population
    overlays: tuple[Overlay, ...] = field(default=(), repr=False, compare=False)
    measurements: tuple[Measurement, ...] = ()
    findings: tuple[FindingResult, ...] = ()  # multi-label classifiers, in manifest order
    cams: np.ndarray | None = field(default=None, repr=False, compare=False)  # (n, h, w) raw
    model_view: np.ndarray | None = field(default=None, repr=False, compare=False)
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    provider: str | None = None

    # -- derived views ---------------------------------------------------------------------
    def overlays_of(self, kind: str) -> tuple[Overlay, ...]:
        return tuple(o for o in self.overlays if o.kind == kind)

    @property
    def mask(self) -> np.ndarray | None:
        """The first segment's mask (segmenters), or ``None``."""
        return next((o.array for o in self.overlays if o.kind == "mask"), None)

    @property
    def heatmap(self) -> np.ndarray | None:
        """The reported heatmap (classifiers with Grad-CAM++), or ``None``."""
        return next((o.array for o in self.overlays if o.kind == "heatmap"), None)

    @property
    def heatmap_label(self) -> str | None:
        return next((o.label for o in self.overlays if o.kind == "heatmap"), None)

    def measurement(self, kind: str, target: str | None = None) -> Measurement | None:
        """The measurement of ``kind`` (on segment or role ``target`` when given)."""
        return next((m for m in self.measurements
                     if m.kind == kind and (target is None or m.label == target)), None)

    @property
    def heatmap_in_lung(self) -> float | None:
        """The declared ``heatmap_share`` inside the ``lung_field`` role, if measured."""
        m = self.measurement("heatmap_share", "lung_field")
        return None if m is None else m.value

    @property
    def multilabel(self) -> bool:
        return bool(self.findings)

    @property
    def positive_probability(self) -> float | None:
        """The positive label's probability; for a multi-label model the highest finding's."""
        if self.findings:
            return max(f.probability for f in self.findings)
        if self.positive_label is None:
            return None
        return self.probabilities.get(self.positive_label)

    def without_arrays(self) -> ModelResult:
        """A copy without the image-sized arrays (for long batches and history)."""
        return replace(self, overlays=(), cams=None, model_view=None)

    def as_row(self) -> dict[str, object]:
        """Flat, JSON-friendly summary (exports, CLI, history)."""
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "status": self.status,
            "reason": self.reason or "",
            "label": self.label or "",
            "confidence": None if self.confidence is None else round(self.confidence, 6),
            "band": self.band or "",
            "threshold": self.threshold,
            "positive_label": self.positive_label or "",
            "positive_probability": (
                None if self.positive_probability is None else round(self.positive_probability, 6)
            ),
            "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()},
            "forced": self.forced,
            "caution": self.caution or "",
            "findings": {f.label: f.as_row() for f in self.findings},
            "measurements": {m.key: m.as_value() for m in self.measurements},
            "notice": RESEARCH_NOTICE,
        }


@dataclass(frozen=True)
class AnalysisResult:
    """Everything the service found for one image."""

    image_id: str
    source: str
    image_shape: tuple[int, int]
    gate: GateAnswer | None
    results: tuple[ModelResult, ...]
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    messages: tuple[str, ...] = ()  # user-visible notes (provider fallback, no gate model)

    def result(self, model_id: str) -> ModelResult | None:
        return next((r for r in self.results if r.model_id == model_id), None)

    def without_arrays(self) -> AnalysisResult:
        return replace(self, results=tuple(r.without_arrays() for r in self.results))
