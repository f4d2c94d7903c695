"""Exports of an AI session's results, Qt-free: CSV/JSON rows, DICOM SEG and Secondary Capture.

What each export contains and when it is refused is decided here from the declarations
(:mod:`viewer.services.declared_exports`: one SEG segment per declared segment with its
manifest's codes, the one heatmap blend); the window only asks where to write and shows the
outcome (``viewer.ui.ai_features``), and ``radview analyze --seg/--masks/--heatmaps`` uses the
same declared exports. Everything goes where the user says and never into a study folder
(``ExportError``, with a message for the user).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from viewer.core.radiograph import Radiograph
from viewer.dicom.deidentify import UidMap, burned_in_annotation_warning
from viewer.dicom.export import (
    BurnedInAnnotationWarning, DicomExportError, write_heatmap_capture, write_segmentation,
)
from viewer.dicom.load import read_dataset
from viewer.services.ai_session import AiSession
from viewer.services.analysis_inputs import input_from_radiograph
from viewer.services.analysis_types import AnalysisResult, ModelResult
from viewer.services.declared_exports import heatmap_picture, segment_specs
from viewer.services.export import (
    ExportError, check_destination, iter_rows, provenance, write_csv, write_json,
)

__all__ = ["ExportError", "ExportOutcome", "PNG_DEID_CAUTION", "RESULTS_KINDS", "export_current",
           "export_heatmap_capture", "export_results", "export_segmentation", "heatmap_view",
           "pixel_text_warning", "study_folders"]

RESULTS_KINDS = ("results_image", "results_selection", "results_folder")
PNG_DEID_CAUTION = ("the patient overlay was left out of the PNG; text burnt into the image's "
                    "own pixels is not removed: check them before sharing it")


@dataclass(frozen=True)
class ExportOutcome:
    """A written export: where, whether de-identified, and what the user must still check."""

    path: Path
    deidentified: bool = False
    caution: str | None = None

    def message(self) -> str:
        if self.caution:
            return f"Exported to {self.path} (de-identified). Caution: {self.caution}"
        return f"Exported to {self.path}" + (" (de-identified)" if self.deidentified else "")


def study_folders(records: Iterable[Any], opened: Iterable[str] = ()) -> set[Path]:
    """Folders holding the open images (and the opened paths): never written into."""
    folders = {Path(r.path).resolve().parent for r in records}
    for p in opened:
        path = Path(p).resolve()
        folders.add(path if path.is_dir() else path.parent)
    return folders


def export_results(results: Sequence[AnalysisResult], dest: Path, folders: Iterable[Path],
                   deidentify: bool = False, models: Iterable[Any] = ()) -> Path:
    """Rows of ``results`` as CSV or JSON (chosen by the file's suffix); ``deidentify`` replaces
    file paths and SOP Instance UIDs (services.export.RowDeidentifier); JSON carries the
    provenance (radview version, time, ``models``' versions and file hashes)."""
    if not results:
        raise ExportError("nothing to export: no analysed image in this scope")
    rows = iter_rows(results)
    if Path(dest).suffix.lower() == ".json":
        return write_json(rows, Path(dest), tuple(folders), deidentify=deidentify,
                          source=provenance(models))
    return write_csv(rows, Path(dest), tuple(folders), deidentify=deidentify)


def _dataset(record: Any) -> Any:
    if getattr(record, "kind", "dicom") != "dicom":
        raise ExportError("DICOM exports need a DICOM source image")
    return read_dataset(record.path, record.member)


def _model_result(result: AnalysisResult, task: str, need: str) -> ModelResult:
    res = next((r for r in result.results if r.task == task and getattr(r, need) is not None), None)
    if res is None:
        what = "segmentation mask" if need == "mask" else "heatmap"
        raise ExportError(f"no {what} for this image: analyse it first (with a "
                          f"{'segmentation model' if need == 'mask' else 'classifier'})")
    return res


def pixel_text_warning(record: Any) -> str | None:
    """The (0028,0301) Burned In Annotation warning for a de-identified DICOM export, if any."""
    return burned_in_annotation_warning(_dataset(record))


def export_segmentation(record: Any, result: AnalysisResult, dest: Path,
                        folders: Iterable[Path], deidentify: bool = False,
                        manifests: Mapping[str, Any] | None = None) -> Path:
    """Every segmenter's masks as one BINARY DICOM Segmentation referencing the source instance,
    one segment per declared segment with its manifest's codes (de-identified per the basic
    confidentiality profile when ``deidentify``). A segment without codes is never given
    made-up ones: with no coded segment at all the export is refused and says why."""
    target = check_destination(Path(dest), tuple(folders))
    _model_result(result, "segmentation", "mask")
    specs, notes = segment_specs(result, manifests or {})
    if not specs:
        raise ExportError("nothing to export as DICOM SEG: " + ("; ".join(notes) or "no masks"))
    try:
        return write_segmentation(_dataset(record), specs, target,
                                  deidentify=UidMap() if deidentify else None)
    except DicomExportError as exc:
        raise ExportError(str(exc)) from exc


def heatmap_view(display: np.ndarray, heatmap: np.ndarray, colormap: str = "inferno",
                 opacity: float = 0.5) -> np.ndarray:
    """The heatmap blended over the display image as the window shows it, notice under it
    (the same function as ``radview analyze --heatmaps``)."""
    return heatmap_picture(display, heatmap, colormap, opacity)


def export_heatmap_capture(record: Any, result: AnalysisResult, display: np.ndarray, dest: Path,
                           folders: Iterable[Path], colormap: str = "inferno",
                           deidentify: bool = False,
                           shown: tuple[str, str, np.ndarray, float] | None = None) -> Path:
    """The heatmap view as a DICOM Secondary Capture referencing the source instance
    (de-identified per the basic confidentiality profile when ``deidentify``). ``shown``:
    ``(model id, class, heatmap, opacity)`` of the map on screen (default: the first
    classifier's reported map at opacity 0.5)."""
    target = check_destination(Path(dest), tuple(folders))
    res: ModelResult | None
    if shown is not None and result.result(shown[0]) is not None:
        model_id, label, heat, opacity = shown
        res = result.result(model_id)
        assert res is not None
    else:
        res = _model_result(result, "classification", "heatmap")
        assert res.heatmap is not None
        model_id, label, heat, opacity = res.model_id, str(res.heatmap_label), res.heatmap, 0.5
    rgb = heatmap_view(display, heat, colormap, opacity)
    description = f"Grad-CAM++ {model_id} {label} {res.model_version}"
    with warnings.catch_warnings():
        # The caller shows pixel_text_warning() to the user; no duplicate Python warning.
        warnings.simplefilter("ignore", BurnedInAnnotationWarning)
        return write_heatmap_capture(_dataset(record), rgb, target, description=description,
                                     deidentify=UidMap() if deidentify else None)


def export_current(kind: str, dest: Path, session: AiSession, folders: Iterable[Path], *,
                   deidentify: bool = False, models: Sequence[Any] = (),
                   selected: Iterable[Any] = (), opened: Iterable[Any] = (),
                   radiograph: Radiograph | None = None, colormap: str = "inferno",
                   shown: tuple[str, str, np.ndarray, float] | None = None) -> ExportOutcome:
    """Export ``kind`` of ``session`` to ``dest``: ``"results_image"``, ``"results_selection"``
    (``selected`` records), ``"results_folder"`` (``opened`` records) as CSV/JSON; ``"seg"``
    the image on screen's masks as DICOM SEG (segments and codes from ``models``' manifests);
    ``"sc"`` its heatmap view (``radiograph`` on screen, ``colormap`` and the ``shown`` map)
    as DICOM Secondary Capture. Raises :class:`ExportError` with the user's message when the
    export is refused (nothing analysed, not a DICOM source, a study folder...)."""
    folders = tuple(folders)
    if kind in RESULTS_KINDS:
        path = export_results(session.scope(kind, selected, opened), dest, folders,
                              deidentify=deidentify, models=models)
        return ExportOutcome(path, deidentify)
    if kind not in ("seg", "sc"):
        raise ExportError(f"unknown export {kind!r}")
    record, result = session.current_record, session.current_result
    if result is None or record is None:
        raise ExportError("analyse the image first")
    if kind == "seg":
        path = export_segmentation(record, result, dest, folders, deidentify=deidentify,
                                   manifests={m.id: m for m in models})
        return ExportOutcome(path, deidentify)
    if radiograph is None:
        raise ExportError("no image on screen")
    display = input_from_radiograph(radiograph, plain=getattr(record, "kind", "dicom") != "dicom").display
    path = export_heatmap_capture(record, result, display, dest, folders, colormap,
                                  deidentify=deidentify, shown=shown)
    return ExportOutcome(path, deidentify, pixel_text_warning(record) if deidentify else None)
