"""The AI use case of one window, Qt-free: results per image, calls and badges, grid order, the
models folders.

The window's AI part (``viewer.ui.ai_features``) holds widgets and forwards what the user does;
what it shows is decided here, so the CLI and tests use the same rules without Qt:

- :class:`AiSession`: the result of each analysed image (by record key), the image on screen
  and its full result (with arrays), lookup by record or by source text, the scope of a
  results export;
- calls, badges and "most suspicious first" (:func:`call_of`, :func:`badge`, :func:`suspicion`,
  :func:`order_records`), derived from the declared outputs (docs/MODELS.md), never from a
  model's id;
- :func:`model_folders`: where the window and ``radview analyze`` look for models.

Exports of a session's results (CSV/JSON, DICOM SEG/SC) are in :mod:`viewer.services.ai_exports`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from viewer.services.analysis_types import (
    ERROR, OK, OUT_OF_SCOPE, OUTSIDE_DATA, AnalysisResult, ModelResult,
)

__all__ = [
    "BAND_SHAPES", "ERROR_BADGE", "FILTER_BANDS", "NOT_ANALYSED", "AiSession", "Badge", "badge",
    "badge_call", "badge_text", "call_of", "filter_choices", "finding_labels", "label_choice",
    "model_folders", "order_records",
    "present_segments", "suspicion", "top_finding",
]

# Confidence bands as shapes, so that colour is never the only cue (the panel adds words).
BAND_SHAPES = {"green": "\u25cf", "orange": "\u25b2", "red": "\u2716"}
FILTER_BANDS = ("green", "orange", "red")
NOT_ANALYSED = "none:"  # the grid filter's value for images without a finding or a result


# -- calls -----------------------------------------------------------------------------------
def present_segments(res: ModelResult) -> list[str]:
    """The segments a segmenter's declared ``presence`` measurements call present."""
    return [m.label for m in res.measurements if m.kind == "presence" and (m.value or 0) >= 0.5]


def call_of(res: ModelResult) -> str | None:
    """The call a model makes: "finding" (a classifier's positive label at or past the
    operating threshold, a multi-label model's finding past its own threshold, a segmenter's
    declared ``presence``), "no finding", "forced" (ran outside its input or data: not a real
    call), or ``None`` (no positive label or presence declared, not analysed)."""
    if res.status != OK:
        return None
    if res.task == "segmentation":
        if not any(m.kind == "presence" for m in res.measurements):
            return None
        if res.forced:
            return "forced"
        return "finding" if present_segments(res) else "no finding"
    if res.forced:
        return "forced"
    if res.findings:
        return "finding" if any(f.positive for f in res.findings) else "no finding"
    if res.positive_label is None or res.label is None:
        return None
    return "finding" if res.label == res.positive_label else "no finding"


def _gate_id(result: AnalysisResult) -> str | None:
    return result.results[0].model_id if result.gate is not None and result.results else None


def top_finding(result: AnalysisResult) -> ModelResult | None:
    """The most suspicious classifier result (a positive label first), gate excluded."""
    gate_id = _gate_id(result)
    candidates = [r for r in result.results if r.status == OK and r.task == "classification"
                  and r.model_id != gate_id and r.label is not None]
    if not candidates:
        return None
    return max(candidates, key=lambda r: (call_of(r) == "finding",
                                          r.positive_probability or 0.0, r.confidence or 0.0))


def suspicion(result: AnalysisResult | None) -> float:
    """Sort key: the highest probability of a positive (abnormal) label or finding among the
    classifiers that ran, and 1.0 for a segment a segmenter's declared ``presence`` calls
    present (0.0 when absent); -1 when nothing ran."""
    if result is None:
        return -1.0
    gate_id = _gate_id(result)
    values = [r.positive_probability for r in result.results
              if r.status == OK and r.task == "classification" and r.model_id != gate_id
              and r.positive_probability is not None]
    values += [float(m.value >= 0.5) for r in result.results if r.status == OK
               for m in r.measurements if m.kind == "presence" and m.value is not None]
    return max(values) if values else -1.0


def finding_labels(result: AnalysisResult) -> list[str]:
    """Labels a filter can pick for this image: the top classifier's label, every positive
    finding of a multi-label model and every segment called present."""
    labels: list[str] = []
    best = top_finding(result)
    if best is not None and best.label:
        labels.append(best.label)
    for r in result.results:
        if r.status != OK:
            continue
        labels += [f.label for f in r.findings if f.positive]
        labels += present_segments(r)
    return list(dict.fromkeys(labels))


# -- badges ----------------------------------------------------------------------------------
def badge_text(result: AnalysisResult) -> tuple[str, str | None]:
    """Short thumbnail badge (top finding, confidence, band shape) and its band colour name."""
    best = top_finding(result)
    present = [f"{lab} (mask)" for r in result.results if r.status == OK
               and r.task == "segmentation" and not r.forced for lab in present_segments(r)]
    if best is None and present:
        return f"\u25b2 {', '.join(present)}", None
    if best is None:
        gate = result.gate
        if any(r.status == OUT_OF_SCOPE for r in result.results):
            region = gate.region if gate is not None else "?"
            return f"\u2298 not analysed ({region})", None
        if any(r.status == OUTSIDE_DATA for r in result.results):
            return "\u2298 outside the models' data", None
        if any(r.status == ERROR for r in result.results):
            return "\u26a0 error", "red"
        return "", None
    shape = BAND_SHAPES.get(best.band or "", "")
    forced = " (forced)" if best.forced else ""
    caution = " \u26a0" if best.caution else ""  # outside the model's population or dates
    also = f" + {', '.join(present)}" if present else ""
    return (f"{shape} {best.label} {100 * (best.confidence or 0):.0f}%{forced}{caution}{also}",
            best.band)


def badge_call(result: AnalysisResult) -> str | None:
    """The call that tints a thumbnail: "finding" when any classifier makes one (not forced),
    else the top result's call; ``None`` when nothing was called."""
    calls = [call_of(r) for r in result.results]
    if "finding" in calls:
        return "finding"
    best = top_finding(result)
    return call_of(best) if best is not None else None


@dataclass(frozen=True)
class Badge:
    """What a thumbnail shows for an analysed image: ``text``, the band colour name for the
    band filter, the ``call`` that tints it, and the labels a filter can pick."""

    text: str
    band: str | None
    call: str | None
    labels: tuple[str, ...]


ERROR_BADGE = Badge("\u26a0 error", "red", "error", ())


def badge(result: AnalysisResult) -> Badge:
    """The thumbnail badge of ``result``."""
    text, band = badge_text(result)
    return Badge(text, band, badge_call(result), tuple(finding_labels(result)))


# -- grid order ------------------------------------------------------------------------------
def filter_choices(labels: Iterable[str] = ()) -> list[tuple[str, str | None]]:
    """The grid filter's ``(text, value)`` choices: all images, each band, not analysed, then
    one per label seen so far (``value`` is what :func:`order_records` takes)."""
    choices: list[tuple[str, str | None]] = [("All images", None)]
    choices += [(f"band: {b}", f"band:{b}") for b in FILTER_BANDS]
    choices.append(("not analysed", NOT_ANALYSED))
    return choices + [label_choice(lab) for lab in labels]


def label_choice(label: str) -> tuple[str, str]:
    """The grid filter's ``(text, value)`` for images with ``label`` (:func:`finding_labels`)."""
    return f"label: {label}", f"label:{label}"


def _keeps(wanted: str, result: AnalysisResult | None) -> bool:
    kind, _, value = wanted.partition(":")
    best = None if result is None else top_finding(result)
    if kind == "none":
        return result is None or (best is None and not finding_labels(result))
    if kind == "label":
        return result is not None and value in finding_labels(result)
    if kind == "band":
        return best is not None and best.band == value
    raise ValueError(f"unknown grid filter {wanted!r} (expected band:, label: or none:)")


def order_records(records: Sequence[Any], results: Any, wanted: str | None = None,
                  most_suspicious: bool = False) -> list[Any]:
    """``records`` kept by the filter ``wanted`` (``"band:<band>"``, ``"label:<label>"``,
    ``"none:"`` or ``None`` for all) and, with ``most_suspicious``, sorted by
    :func:`suspicion` (stable: equal scores keep folder order). ``results`` maps a record's
    ``key`` to its :class:`AnalysisResult` (``results.get``)."""
    kept = [r for r in records if wanted is None or _keeps(wanted, results.get(r.key))]
    if most_suspicious:
        kept.sort(key=lambda r: -suspicion(results.get(r.key)))
    return kept


# -- results per image -----------------------------------------------------------------------
class AiSession:
    """The results of one window's analyses, and the image on screen.

    ``results`` keeps every analysed image's result by record key, without arrays (masks and
    heatmaps of a folder would not fit in memory); ``current_result`` is the full result of the
    image on screen, dropped as soon as another image is shown. Records are
    :class:`~viewer.dicom.scan.InstanceRecord`-like: ``key``, ``source``."""

    def __init__(self) -> None:
        self.results: dict[Hashable, AnalysisResult] = {}
        self.current_record: Any = None
        self.current_result: AnalysisResult | None = None

    def show(self, record: Any) -> bool:
        """``record`` (or ``None``) is on screen now; its previous full result is forgotten.
        Returns whether it changed."""
        if record is self.current_record:
            return False
        self.current_record, self.current_result = record, None
        return True

    def is_current(self, record: Any) -> bool:
        return record is not None and record is self.current_record

    def add(self, record: Any, result: AnalysisResult) -> None:
        """A result of ``record``: the full one becomes the current result when ``record`` is
        on screen; the session keeps it without arrays."""
        if self.is_current(record):
            self.current_result = result
        self.results[record.key] = result.without_arrays()

    def add_batch(self, record: Any, result: AnalysisResult) -> None:
        """A batch result (already without arrays): never replaces the current full result."""
        self.results[record.key] = result

    def result_of(self, record: Any) -> AnalysisResult | None:
        """The full result when ``record`` is on screen and analysed, else the kept one."""
        if record is None:
            return None
        if self.is_current(record) and self.current_result is not None:
            return self.current_result
        return self.results.get(record.key)

    def shown_result(self) -> AnalysisResult | None:
        """The result of the image on screen (``None`` when none or not analysed)."""
        return self.result_of(self.current_record)

    def result_for_source(self, source: str) -> AnalysisResult | None:
        """The kept result whose source text (``InstanceRecord.source``) is ``source``."""
        if self.current_result is not None and self.current_result.source == source:
            return self.current_result
        return next((r for r in self.results.values() if r.source == source), None)

    def unanalysed(self, records: Iterable[Any]) -> list[Any]:
        return [r for r in records if r.key not in self.results]

    def scope(self, kind: str, selected: Iterable[Any] = (), opened: Iterable[Any] = ()
              ) -> list[AnalysisResult]:
        """The results a results export of ``kind`` covers: ``"results_image"`` the image on
        screen, ``"results_selection"`` the ``selected`` records, ``"results_folder"`` every
        ``opened`` record; records not analysed are left out."""
        if kind == "results_image":
            res = self.shown_result()
            return [] if res is None else [res]
        if kind == "results_selection":
            records = selected
        elif kind == "results_folder":
            records = opened
        else:
            raise ValueError(f"unknown results scope {kind!r}")
        return [self.results[r.key] for r in records if r.key in self.results]

    def order(self, records: Sequence[Any], wanted: str | None = None,
              most_suspicious: bool = False) -> list[Any]:
        """:func:`order_records` over this session's results."""
        return order_records(records, self.results, wanted, most_suspicious)


# -- models folders --------------------------------------------------------------------------
def model_folders(extra: Iterable[Path | str] = (), chosen: Path | str | None = None) -> list[Path]:
    """The models folders searched before the bundled models, first wins on a duplicate id:
    ``extra`` (``--models-dir``), the folder chosen in the window's settings, then the user
    models folder that ``radview models add`` writes to (``$RADVIEW_MODELS_DIR`` or the
    per-user data folder). Duplicates are listed once."""
    from viewer.inference.model_add import user_models_dir

    folders = [Path(d) for d in extra]
    if chosen:
        folders.append(Path(chosen))
    folders.append(user_models_dir())
    seen: set[Path] = set()
    unique = []
    for f in folders:
        key = f.expanduser().absolute()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique
