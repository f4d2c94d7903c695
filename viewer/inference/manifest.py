"""Model manifests (docs/MODELS.md): parse, validate and check the ONNX file's checksum.

A manifest that cannot be used never raises out of :func:`load_manifest`: the model is returned
as *unavailable* with a human-readable reason, so one bad file in a models folder cannot break
the viewer.
"""

from __future__ import annotations

import math

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from collections.abc import Mapping

from viewer.core.preprocess import InputSpec

__all__ = [
    "ModelManifest", "ModelEntry", "load_manifest", "sha256_file", "DEFAULT_BANDS", "Code",
    "OutputDecl", "Finding", "Segment", "MeasurementDecl", "ManifestError", "ROLES",
    "MEASUREMENT_KINDS", "OUTPUT_KINDS", "ModelContractError", "channel_index",
]

DEFAULT_BANDS: Mapping[str, float] = MappingProxyType({"green": 0.9, "orange": 0.7})
_TASKS = ("classification", "segmentation")
OUTPUT_KINDS = ("logits", "multilabel_logits", "activations", "segmentation_logits",
                "applicability")
_KNOWN_KINDS = OUTPUT_KINDS
ROLES = ("lung_field", "finding", "anatomy", "region")
MEASUREMENT_KINDS = ("area_fraction", "presence", "heatmap_share")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Applicability:
    """A model's own "outside this model's data" check (manifest key ``applicability``).

    ``output`` names a graph output of kind ``applicability``: one score per image, larger for
    images less like the model's training data (e.g. a Mahalanobis distance of the pooled
    activations). Above ``threshold`` the model gives no finding (status ``outside_data``).
    """

    output: str
    threshold: float
    method: str = ""
    rates: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Code:
    """A coded concept ``(scheme, value, meaning)``, e.g. ``("SCT", "39607008", "Lung")``: what
    highdicom's ``SegmentDescription`` needs for a segment's category and type."""

    scheme: str
    value: str
    meaning: str

    def as_list(self) -> list[str]:
        return [self.scheme, self.value, self.meaning]


@dataclass(frozen=True)
class OutputDecl:
    """One graph output and what it means (``kind``: one of :data:`OUTPUT_KINDS`)."""

    name: str
    kind: str


@dataclass(frozen=True)
class Finding:
    """One finding of a multi-label classifier (an independent sigmoid on its own logit)."""

    label: str
    threshold: float
    bands: Mapping[str, float]
    category: Code | None = None
    type: Code | None = None


@dataclass(frozen=True)
class Segment:
    """One declared segment of a segmenter: the mask ``sigmoid(logits[channel]) >= threshold``.

    ``channel`` counts the labels' channels: with a one-channel output the background is the
    implied channel 0 and the output's only channel is channel 1.
    """

    label: str
    channel: int
    role: str
    threshold: float
    category: Code | None = None
    type: Code | None = None

    @property
    def coded(self) -> bool:
        """Has both codes (category and type): it can be exported as a DICOM SEG segment."""
        return self.category is not None and self.type is not None


@dataclass(frozen=True)
class MeasurementDecl:
    """A derived measurement (``kind`` in :data:`MEASUREMENT_KINDS`)."""

    kind: str
    segment: str | None = None  # area_fraction, presence
    role: str | None = None  # heatmap_share
    min_area_fraction: float | None = None  # presence

    def key(self, model_id: str) -> str:
        """The stable key ``<model>.<kind>[.<segment-or-role>]`` (CSV/JSON columns, history)."""
        target = self.segment or self.role
        return f"{model_id}.{self.kind}" + (f".{target}" if target else "")


@dataclass(frozen=True)
class ModelManifest:
    """A validated manifest. ``raw`` keeps every field for the "About this model" panel."""

    id: str
    version: str
    name: str
    task: str
    onnx_path: Path
    labels: tuple[str, ...]
    input_spec: InputSpec
    input_name: str
    outputs: Mapping[str, str]  # output name -> kind
    threshold: float | None  # None: no operating point (e.g. the gate)
    bands: Mapping[str, float]
    temperature: float = 1.0
    positive_label: str | None = None
    gate: bool = False
    applies_to: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ood: Mapping[str, Any] | None = None
    gradcam_output: str | None = None
    gradcam_weight: tuple[tuple[float, ...], ...] | None = None
    age_range: tuple[float | None, float | None] | None = None  # population.age_years
    population: str = ""
    study_date_from: tuple[str, str] | None = None  # (ISO date, why): outside its data before it
    applicability: Applicability | None = None
    schema: int = 1
    findings: tuple[Finding, ...] = ()
    segments: tuple[Segment, ...] = ()
    measurements: tuple[MeasurementDecl, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def multilabel(self) -> bool:
        """A multi-label classifier (independent sigmoids, one per finding)."""
        return "multilabel_logits" in self.outputs.values()

    @property
    def output_decls(self) -> tuple[OutputDecl, ...]:
        return tuple(OutputDecl(n, k) for n, k in self.outputs.items())

    def segment(self, label: str) -> Segment | None:
        return next((s for s in self.segments if s.label == label), None)

    def segments_with_role(self, role: str) -> tuple[Segment, ...]:
        return tuple(s for s in self.segments if s.role == role)

    def output_of_kind(self, kind: str) -> str | None:
        """Name of the first output of ``kind``, or ``None``."""
        return next((n for n, k in self.outputs.items() if k == kind), None)

    @property
    def positive_index(self) -> int | None:
        """Index of ``positive_label`` in ``labels`` (classifiers), or ``None``."""
        if self.positive_label is None or self.positive_label not in self.labels:
            return None
        return self.labels.index(self.positive_label)


@dataclass(frozen=True)
class ModelEntry:
    """One discovered model: usable (``manifest`` set) or not (``reason`` says why)."""

    id: str
    manifest_path: Path
    manifest: ModelManifest | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.manifest is not None and self.reason is None


class ManifestError(ValueError):
    """A manifest is malformed or inconsistent with its ONNX file."""


class ModelContractError(ValueError):
    """The ONNX graph does not have the input or outputs its manifest names, or an output's
    shape does not fit its declaration (a message in our words, naming the manifest's key, for
    the model's author)."""


def channel_index(segment: Segment, where: str, channels: int) -> int:
    """Index into an output of ``channels`` channels of ``segment`` (``where`` names its key).

    With one channel the background is the implied channel 0 and the output's channel is 1.
    """
    if channels == 1:
        if segment.channel != 1:
            raise ModelContractError(
                f"{where}.channel: expected 1 (the output has one channel, the foreground; "
                f"channel 0 is the implied background), got {segment.channel}")
        return 0
    if segment.channel >= channels:
        raise ModelContractError(f"{where}.channel: expected an integer < {channels} (the output "
                                 f"has {channels} channels), got {segment.channel}")
    return segment.channel


def _require(block: Mapping[str, Any], key: str) -> Any:
    if key not in block:
        raise ManifestError(f"{key}: missing field {key!r}")
    return block[key]


def _threshold(raw: Mapping[str, Any], task: str) -> float | None:
    value = raw.get("threshold", 0.5 if task == "segmentation" or raw.get("positive_label") else None)
    if value is None:
        if task == "segmentation":
            raise ManifestError("a segmentation model needs a threshold")
        return None
    t = float(value)
    if not 0.0 <= t <= 1.0:
        raise ManifestError(f"threshold: {t} is outside [0, 1]")
    return t


def _age_range(value: Any) -> tuple[float | None, float | None] | None:
    """``age_years``: ``[min, max]`` in years at the study, either may be ``null`` (open)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ManifestError("age_years must be [min, max] (null for an open end)")
    low, high = (None if v is None else float(v) for v in value)
    if low is not None and high is not None and low > high:
        raise ManifestError(f"age_years minimum {low} is above the maximum {high}")
    return low, high


def _date_from(value: Any) -> tuple[str, str] | None:
    """``study_date_from``: ``{"date": "YYYY-MM-DD", "why": "..."}``, e.g. when the finding
    a model looks for cannot exist on an older film."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value.get("date") or not value.get("why"):
        raise ManifestError('study_date_from must be {"date": "YYYY-MM-DD", "why": "..."}')
    try:
        day = dt.date.fromisoformat(str(value["date"]))
    except ValueError as exc:
        raise ManifestError(f"study_date_from date {value['date']!r} is not YYYY-MM-DD") from exc
    return day.isoformat(), str(value["why"])


def _ood(value: Any, labels: tuple[str, ...]) -> Mapping[str, Any] | None:
    """The gate's OOD rule; ``class_thresholds`` must map its labels to finite numbers."""
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise ManifestError("ood must be an object")
    per = value.get("class_thresholds")
    if per is not None:
        if not isinstance(per, Mapping):
            raise ManifestError("ood.class_thresholds must map labels to numbers")
        for label, limit in per.items():
            if label not in labels:
                raise ManifestError(f"ood.class_thresholds: {label!r} is not one of the labels")
            if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit):
                raise ManifestError(f"ood.class_thresholds.{label} must be a finite number")
    return MappingProxyType(dict(value))


def _applicability(value: Any, outputs: Mapping[str, str]) -> Applicability | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ManifestError("applicability must be an object with output and threshold")
    output = str(value.get("output", ""))
    if outputs.get(output) != "applicability":
        raise ManifestError(f"applicability.output {output!r} is not an output of kind 'applicability'")
    try:
        threshold = float(value["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError("applicability.threshold must be a number") from exc
    if not math.isfinite(threshold):
        raise ManifestError("applicability.threshold must be finite")
    rates = {str(k): float(v) for k, v in (value.get("rates") or {}).items()
             if isinstance(v, (int, float))}
    return Applicability(output, threshold, str(value.get("method", "")), MappingProxyType(rates))


def _number(value: Any, where: str, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ManifestError(f"{where}: expected a number in [{low:g}, {high:g}], got {value!r}")
    if not low <= float(value) <= high:
        raise ManifestError(f"{where}: expected a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _code(value: Any, where: str) -> Code | None:
    """``[scheme, value, meaning]`` (e.g. ``["SCT", "39607008", "Lung"]``) or absent."""
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise ManifestError(f"{where}: expected [scheme, value, meaning] (three non-empty "
                            f"strings, e.g. [\"SCT\", \"39607008\", \"Lung\"]), got {value!r}")
    return Code(str(value[0]), str(value[1]), str(value[2]))


def _codes(block: Mapping[str, Any], where: str) -> tuple[Code | None, Code | None]:
    category = _code(block.get("category"), f"{where}.category")
    kind = _code(block.get("type"), f"{where}.type")
    if (category is None) != (kind is None):
        missing = "type" if kind is None else "category"
        raise ManifestError(f"{where}.{missing}: expected a code beside the "
                            f"{'category' if kind is None else 'type'} (both or neither)")
    return category, kind


def _bands(value: Any, where: str, default: Mapping[str, float]) -> Mapping[str, float]:
    bands = dict(default)
    if value is None:
        return MappingProxyType(bands)
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where}: expected an object {{\"green\": .., \"orange\": ..}}")
    for key, v in value.items():
        if key not in ("green", "orange"):
            raise ManifestError(f"{where}.{key}: unknown band (expected green or orange)")
        bands[str(key)] = _number(v, f"{where}.{key}")
    if bands["orange"] > bands["green"]:
        raise ManifestError(f"{where}: orange {bands['orange']:g} is above green {bands['green']:g}")
    return MappingProxyType(bands)


def _list(raw: Mapping[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"{key}: expected a list, got {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where}: expected an object, got {value!r}")
    return value


def _outputs(raw: Mapping[str, Any]) -> dict[str, str]:
    outputs: dict[str, str] = {}
    entries = _require(raw, "outputs")
    if not isinstance(entries, list):
        raise ManifestError("outputs: expected a list of {\"name\": .., \"kind\": ..}")
    for i, out in enumerate(entries):
        out = _object(out, f"outputs[{i}]")
        name = _text(out.get("name"), f"outputs[{i}].name")
        kind = out.get("kind")
        if kind not in _KNOWN_KINDS:
            raise ManifestError(f"outputs[{i}].kind: unknown output kind {kind!r} (expected one "
                                f"of {', '.join(_KNOWN_KINDS)})")
        if name in outputs:
            raise ManifestError(f"outputs[{i}].name: {name!r} is declared twice")
        outputs[name] = str(kind)
    return outputs


def _findings(raw: Mapping[str, Any], bands: Mapping[str, float],
              threshold: float | None) -> tuple[Finding, ...]:
    found: list[Finding] = []
    for i, item in enumerate(_list(raw, "findings")):
        where = f"findings[{i}]"
        item = _object(item, where)
        label = _text(item.get("label"), f"{where}.label")
        if any(f.label == label for f in found):
            raise ManifestError(f"{where}.label: {label!r} is declared twice")
        t = item.get("threshold", threshold)
        if t is None:
            raise ManifestError(f"{where}.threshold: expected a number in [0, 1] (no model "
                                "threshold to default to)")
        codes = _object(item.get("codes") or {}, f"{where}.codes")
        category, kind = _codes(codes, f"{where}.codes")
        found.append(Finding(label, _number(t, f"{where}.threshold"),
                             _bands(item.get("bands"), f"{where}.bands", bands), category, kind))
    return tuple(found)


def _segments(raw: Mapping[str, Any], labels: tuple[str, ...], threshold: float | None,
              schema: int) -> tuple[Segment, ...]:
    if schema == 1 or "segments" not in raw:
        # Schema 1: labels [background, X] is one segment X on channel 1, role region, no codes.
        return tuple(Segment(lab, i, "region", 0.5 if threshold is None else threshold)
                     for i, lab in enumerate(labels) if i > 0)
    found: list[Segment] = []
    items = _list(raw, "segments")
    if not items:
        raise ManifestError("segments: a segmentation model needs at least one segment")
    for i, item in enumerate(items):
        where = f"segments[{i}]"
        item = _object(item, where)
        label = _text(item.get("label"), f"{where}.label")
        if any(s.label == label for s in found):
            raise ManifestError(f"{where}.label: {label!r} is declared twice")
        channel = item.get("channel")
        if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
            raise ManifestError(f"{where}.channel: expected an integer >= 0, got {channel!r}")
        role = item.get("role")
        if role not in ROLES:
            raise ManifestError(f"{where}.role: expected one of {', '.join(ROLES)}, got {role!r}")
        t = item.get("threshold", 0.5 if threshold is None else threshold)
        category, kind = _codes(item, where)
        found.append(Segment(label, channel, str(role), _number(t, f"{where}.threshold"),
                             category, kind))
    return tuple(found)


def _measurements(raw: Mapping[str, Any], task: str,
                  segments: tuple[Segment, ...]) -> tuple[MeasurementDecl, ...]:
    found: list[MeasurementDecl] = []
    for i, item in enumerate(_list(raw, "measurements")):
        where = f"measurements[{i}]"
        item = _object(item, where)
        kind = item.get("kind")
        if kind not in MEASUREMENT_KINDS:
            raise ManifestError(f"{where}.kind: expected one of {', '.join(MEASUREMENT_KINDS)}, "
                                f"got {kind!r}")
        if kind == "heatmap_share":
            if task != "classification":
                raise ManifestError(f"{where}.kind: heatmap_share is for classifiers (a "
                                    "segmenter has no heatmap)")
            role = item.get("role")
            if role not in ROLES:
                raise ManifestError(f"{where}.role: expected one of {', '.join(ROLES)}, "
                                    f"got {role!r}")
            decl = MeasurementDecl("heatmap_share", role=str(role))
        else:
            if task != "segmentation":
                raise ManifestError(f"{where}.kind: {kind} is for segmenters")
            seg = item.get("segment")
            names = [s.label for s in segments]
            if seg not in names:
                raise ManifestError(f"{where}.segment: {seg!r} is not a declared segment "
                                    f"(declared: {', '.join(map(repr, names))})")
            low = None
            if kind == "presence":
                low = _number(item.get("min_area_fraction"), f"{where}.min_area_fraction")
            decl = MeasurementDecl(str(kind), segment=str(seg), min_area_fraction=low)
        if any(d == decl for d in found):
            raise ManifestError(f"{where}: declared twice")
        found.append(decl)
    return tuple(found)


def _parse(raw: Mapping[str, Any], manifest_path: Path, verify_checksum: bool) -> ModelManifest:
    schema = raw.get("schema", 1)
    if schema not in (1, 2) or isinstance(schema, bool):
        raise ManifestError(f"schema: expected 1 or 2, got {schema!r}")
    task = str(_require(raw, "task"))
    if task not in _TASKS:
        raise ManifestError(f"task: expected one of {', '.join(_TASKS)}, got {task!r}")
    onnx_path = (manifest_path.parent / str(_require(raw, "file"))).resolve()
    if not onnx_path.is_file():
        raise ManifestError(f"model file {onnx_path.name} is missing")
    expected = str(_require(raw, "sha256")).lower()
    if verify_checksum and sha256_file(onnx_path) != expected:
        raise ManifestError(f"checksum of {onnx_path.name} does not match the manifest")
    outputs = _outputs(raw)
    if schema == 1 and "multilabel_logits" in outputs.values():
        raise ManifestError("outputs: kind 'multilabel_logits' needs \"schema\": 2")
    multilabel = "multilabel_logits" in outputs.values()
    needed = ("logits", "multilabel_logits") if task == "classification" else ("segmentation_logits",)
    if not any(k in outputs.values() for k in needed):
        raise ManifestError(f"outputs: a {task} model needs an output of kind "
                            f"{' or '.join(map(repr, needed))}")
    if "logits" in outputs.values() and multilabel:
        raise ManifestError("outputs: a classifier has either 'logits' (exclusive classes) or "
                            "'multilabel_logits' (independent findings), not both")
    bands = _bands(raw.get("bands"), "bands", DEFAULT_BANDS)
    threshold = _threshold(raw, task)
    findings = _findings(raw, bands, threshold) if multilabel else ()
    if multilabel:
        if not findings:
            raise ManifestError("findings: a multilabel_logits output needs at least one finding")
        labels = tuple(f.label for f in findings)
        if "labels" in raw and tuple(str(x) for x in raw["labels"]) != labels:
            raise ManifestError("labels: must be absent or equal the findings' labels, in order")
    else:
        if "findings" in raw:
            raise ManifestError("findings: only for a classifier with a 'multilabel_logits' output")
        labels = tuple(str(x) for x in _require(raw, "labels"))
        if len(labels) < 2:
            raise ManifestError("labels: a model needs at least two labels")
    input_block = dict(_require(raw, "input"))
    calibration = raw.get("calibration") or {}
    temperature = float(calibration.get("temperature", 1.0))
    if not temperature > 0:
        raise ManifestError("calibration temperature must be > 0")
    gradcam = raw.get("gradcam") or None
    weight = None
    if gradcam is not None:
        weight = tuple(tuple(float(v) for v in row) for row in gradcam["weight"])
        if len(weight) != len(labels):
            raise ManifestError(f"gradcam.weight: expected one row per "
                                f"{'finding' if multilabel else 'label'} ({len(labels)}), "
                                f"got {len(weight)}")
    positive = raw.get("positive_label")
    if positive is not None and (multilabel or positive not in labels):
        raise ManifestError(f"positive_label: {positive!r} is not one of the labels"
                            if not multilabel else
                            "positive_label: a multi-label classifier has one call per finding")
    segments = _segments(raw, labels, threshold, int(schema)) if task == "segmentation" else ()
    if task != "segmentation" and "segments" in raw:
        raise ManifestError("segments: only for a segmentation model")
    applies = {str(k): tuple(str(x) for x in v) for k, v in (raw.get("applies_to") or {}).items()}
    population = raw.get("population") or ""
    return ModelManifest(
        id=str(_require(raw, "id")),
        version=str(_require(raw, "version")),
        name=str(raw.get("name", raw["id"])),
        task=task,
        onnx_path=onnx_path,
        labels=labels,
        input_spec=InputSpec.from_manifest(input_block),
        input_name=str(input_block.get("name", "input")),
        outputs=MappingProxyType(outputs),
        threshold=threshold,
        bands=bands,
        temperature=temperature,
        positive_label=None if positive is None else str(positive),
        gate=bool(raw.get("gate", False)),
        applies_to=MappingProxyType(applies),
        ood=_ood(raw.get("ood"), labels),
        gradcam_output=None if gradcam is None else str(gradcam.get("activations_output", "activations")),
        gradcam_weight=weight,
        age_range=_age_range(raw.get("age_years")),
        population=str(population),
        study_date_from=_date_from(raw.get("study_date_from")),
        applicability=_applicability(raw.get("applicability"), outputs),
        schema=int(schema),
        findings=findings,
        segments=segments,
        measurements=_measurements(raw, task, segments),
        raw=MappingProxyType(dict(raw)),
    )


def load_manifest(manifest_path: Path, *, verify_checksum: bool = True) -> ModelEntry:
    """Read and validate one ``<id>.json`` manifest; never raises for a bad model.

    Parameters
    ----------
    manifest_path
        Path of the manifest; its ``file`` is resolved relative to it.
    verify_checksum
        Compare the ONNX file's SHA-256 with the manifest's ``sha256``.
    """
    manifest_path = Path(manifest_path)
    fallback_id = manifest_path.stem
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ManifestError("the manifest is not a JSON object")
        model_id = str(raw.get("id", fallback_id))
        return ModelEntry(model_id, manifest_path, _parse(raw, manifest_path, verify_checksum))
    except (OSError, json.JSONDecodeError) as exc:
        return ModelEntry(fallback_id, manifest_path, None, f"cannot read manifest: {exc}")
    except (ManifestError, KeyError, TypeError, ValueError) as exc:
        msg = str(exc) if isinstance(exc, ManifestError) else f"invalid manifest: {exc!r}"
        model_id = raw.get("id", fallback_id) if isinstance(raw, dict) else fallback_id
        return ModelEntry(str(model_id), manifest_path, None, msg)
