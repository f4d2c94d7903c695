"""File > Export: results as CSV/JSON, the view "as seen" as PNG, DICOM SEG and Secondary Capture.

Everything goes where the user says (a file dialog) and never into a study folder: the services
refuse such a destination (``ExportError``) and the message is shown to the user. CSV/JSON rows
carry the model version, threshold, calibrated probability, forced flag and research notice.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from PySide6.QtGui import QImage

from viewer.dicom.deidentify import UidMap, burned_in_annotation_warning
from viewer.dicom.export import (
    BurnedInAnnotationWarning, DicomExportError, write_heatmap_capture, write_segmentation,
)
from viewer.dicom.load import read_dataset
from viewer.services.analysis_types import AnalysisResult
from viewer.services.declared_exports import heatmap_picture, segment_specs
from viewer.services.export import (
    ExportError, check_destination, iter_rows, provenance, write_csv, write_json,
    write_png,
)

__all__ = ["ExportError", "study_folders", "export_results", "grab_rgb", "export_png",
           "export_segmentation", "export_heatmap_capture", "pixel_text_warning"]


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


def grab_rgb(widget: Any) -> np.ndarray:
    """The widget as rendered on screen, as an (H, W, 3) uint8 array."""
    img = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : 3 * w].reshape(h, w, 3).copy()


def export_png(view_widget: Any, dest: Path, folders: Iterable[Path], *,
               deidentify: bool = False) -> Path:
    """PNG of the current view (window/level, orientation, overlays) with the notice burnt in.

    ``deidentify``: the patient overlay (name, ID, dates in the corner text) is hidden for the
    grab whatever the screen shows, and shown again after it."""
    label = getattr(view_widget, "overlay_label", None)
    hide = label if deidentify and label is not None and label.isVisible() else None
    if hide is not None:
        hide.setVisible(False)
    # The measurements are drawn in the view and so are in the PNG; a selected item's edit
    # handles are not.
    measurements = getattr(view_widget, "measurements", None)
    if measurements is not None:
        measurements.set_handles_visible(False)
    try:
        # The image view only: the on-screen notice strip under it is replaced by the export's
        # own strip (write_png), not doubled.
        rgb = grab_rgb(getattr(view_widget, "view", view_widget))
    finally:
        if hide is not None:
            hide.setVisible(True)
        if measurements is not None:
            measurements.set_handles_visible(True)
    return write_png(rgb, Path(dest), tuple(folders))


def _dataset(record: Any) -> Any:
    if getattr(record, "kind", "dicom") != "dicom":
        raise ExportError("DICOM exports need a DICOM source image")
    return read_dataset(record.path, record.member)


def _model_result(result: AnalysisResult, task: str, need: str) -> Any:
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
    if shown is not None and result.result(shown[0]) is not None:
        model_id, label, heat, opacity = shown
        res = result.result(model_id)
        assert res is not None
    else:
        res = _model_result(result, "classification", "heatmap")
        model_id, label, heat, opacity = res.model_id, res.heatmap_label, res.heatmap, 0.5
    rgb = heatmap_view(display, heat, colormap, opacity)
    description = f"Grad-CAM++ {model_id} {label} {res.model_version}"
    with warnings.catch_warnings():
        # The caller shows pixel_text_warning() to the user; no duplicate Python warning.
        warnings.simplefilter("ignore", BurnedInAnnotationWarning)
        return write_heatmap_capture(_dataset(record), rgb, target, description=description,
                                     deidentify=UidMap() if deidentify else None)
