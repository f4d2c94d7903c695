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

__all__ = ["ModelManifest", "ModelEntry", "load_manifest", "sha256_file", "DEFAULT_BANDS"]

DEFAULT_BANDS: Mapping[str, float] = MappingProxyType({"green": 0.9, "orange": 0.7})
_TASKS = ("classification", "segmentation")
_KNOWN_KINDS = ("logits", "activations", "segmentation_logits", "applicability")


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
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

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


def _require(block: Mapping[str, Any], key: str) -> Any:
    if key not in block:
        raise ManifestError(f"missing field {key!r}")
    return block[key]


def _threshold(raw: Mapping[str, Any], task: str) -> float | None:
    value = raw.get("threshold", 0.5 if task == "segmentation" or raw.get("positive_label") else None)
    if value is None:
        if task == "segmentation":
            raise ManifestError("a segmentation model needs a threshold")
        return None
    t = float(value)
    if not 0.0 <= t <= 1.0:
        raise ManifestError(f"threshold {t} is outside [0, 1]")
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


def _parse(raw: Mapping[str, Any], manifest_path: Path, verify_checksum: bool) -> ModelManifest:
    if int(raw.get("schema", 1)) != 1:
        raise ManifestError(f"unsupported schema {raw.get('schema')!r}")
    task = str(_require(raw, "task"))
    if task not in _TASKS:
        raise ManifestError(f"unknown task {task!r}")
    onnx_path = (manifest_path.parent / str(_require(raw, "file"))).resolve()
    if not onnx_path.is_file():
        raise ManifestError(f"model file {onnx_path.name} is missing")
    expected = str(_require(raw, "sha256")).lower()
    if verify_checksum and sha256_file(onnx_path) != expected:
        raise ManifestError(f"checksum of {onnx_path.name} does not match the manifest")
    labels = tuple(str(x) for x in _require(raw, "labels"))
    if len(labels) < 2:
        raise ManifestError("a model needs at least two labels")
    outputs: dict[str, str] = {}
    for out in _require(raw, "outputs"):
        kind = str(out["kind"])
        if kind not in _KNOWN_KINDS:
            raise ManifestError(f"unknown output kind {kind!r}")
        outputs[str(out["name"])] = kind
    needed = "logits" if task == "classification" else "segmentation_logits"
    if needed not in outputs.values():
        raise ManifestError(f"a {task} model needs an output of kind {needed!r}")
    input_block = dict(_require(raw, "input"))
    calibration = raw.get("calibration") or {}
    temperature = float(calibration.get("temperature", 1.0))
    if not temperature > 0:
        raise ManifestError("calibration temperature must be > 0")
    bands = dict(DEFAULT_BANDS)
    bands.update({k: float(v) for k, v in (raw.get("bands") or {}).items()})
    gradcam = raw.get("gradcam") or None
    weight = None
    if gradcam is not None:
        weight = tuple(tuple(float(v) for v in row) for row in gradcam["weight"])
        if len(weight) != len(labels):
            raise ManifestError("gradcam weight must have one row per label")
    positive = raw.get("positive_label")
    if positive is not None and positive not in labels:
        raise ManifestError(f"positive_label {positive!r} is not one of the labels")
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
        threshold=_threshold(raw, task),
        bands=MappingProxyType(bands),
        temperature=temperature,
        positive_label=None if positive is None else str(positive),
        gate=bool(raw.get("gate", False)),
        applies_to=MappingProxyType(applies),
        ood=MappingProxyType(dict(raw["ood"])) if raw.get("ood") else None,
        gradcam_output=None if gradcam is None else str(gradcam.get("activations_output", "activations")),
        gradcam_weight=weight,
        age_range=_age_range(raw.get("age_years")),
        population=str(population),
        study_date_from=_date_from(raw.get("study_date_from")),
        applicability=_applicability(raw.get("applicability"), outputs),
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
