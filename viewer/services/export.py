"""Exports of analysis results: CSV, JSON and a PNG "as seen" with the research notice.

Every row carries the model version, the operating threshold, the calibrated probability, the
forced flag and the research notice, because a score means nothing without them. Files are
written under a temporary name in the destination folder and renamed into place (atomic on one
file system), and never into a folder the caller marks as a study folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import TextIO
from collections.abc import Callable, Collection, Iterable, Iterator

import cv2
import numpy as np

from viewer import RESEARCH_NOTICE
from viewer.core.files import atomic_write, temp_beside, write_failure_text
from viewer.dicom.deidentify import UidMap
from viewer.services.analysis_types import AnalysisResult

__all__ = [
    "ExportError",
    "RowDeidentifier",
    "write_failure",
    "CSV_FIELDS",
    "result_rows",
    "check_destination",
    "atomic_write_bytes",
    "write_csv",
    "write_json",
    "CsvResultWriter",
    "burn_notice",
    "write_png",
]

CSV_FIELDS = (
    "file", "image_id", "model_id", "model_version", "status", "reason", "label", "confidence",
    "band", "threshold", "positive_label", "positive_probability", "probabilities", "forced",
    "caution", "findings", "measurements", "notice",
)
# JSON-object cells: every class's probability, a multi-label model's findings (label ->
# probability, threshold, call, band) and the declared measurements (``<model>.<kind>[.<segment
# or role>]`` -> value), in CSV as JSON text.
JSON_FIELDS = ("probabilities", "findings", "measurements")


class ExportError(RuntimeError):
    """An export cannot be written where asked (inside a study folder, disk full, read-only
    folder); the message is for the user."""


def write_failure(target: Path, exc: OSError) -> ExportError:
    """A user-facing :class:`ExportError` for an ``OSError`` met while writing ``target``."""
    return ExportError(write_failure_text(target, exc))


class RowDeidentifier:
    """De-identifies result rows for one export (PS3.15 Annex E spirit, applied to CSV/JSON).

    ``file`` (a path that may name the patient) becomes ``image-0001``, ``image-0002``, ... in
    order of first appearance; a DICOM ``image_id`` ((0008,0018) SOP Instance UID) is replaced
    through a :class:`~viewer.dicom.deidentify.UidMap`, so the rows match a DICOM SEG/SC written
    with the same map. Content hashes (``sha:...``) identify pixels, not people, and are kept.
    """

    def __init__(self, uids: UidMap | None = None) -> None:
        self.uids = uids if uids is not None else UidMap()  # an empty map is falsy (__len__)
        self._files: dict[str, str] = {}

    def __call__(self, row: dict[str, object]) -> dict[str, object]:
        out = dict(row)
        source = str(row.get("file", "") or "")
        if source:
            out["file"] = self._files.setdefault(source, f"image-{len(self._files) + 1:04d}")
        image_id = str(row.get("image_id", "") or "")
        if image_id and image_id.replace(".", "").isdigit():
            out["image_id"] = self.uids(image_id)
        return out


def _maybe_deidentified(rows: Iterable[dict[str, object]],
                        deidentify: RowDeidentifier | bool) -> Iterable[dict[str, object]]:
    if not deidentify:
        return rows
    fn = deidentify if isinstance(deidentify, RowDeidentifier) else RowDeidentifier()
    return (fn(row) for row in rows)


def result_rows(result: AnalysisResult) -> list[dict[str, object]]:
    """One flat row per model of ``result`` (``probabilities`` stays a dict)."""
    return [{"file": result.source, "image_id": result.image_id, **r.as_row()}
            for r in result.results]


def check_destination(dest: Path, study_folders: Collection[Path] = ()) -> Path:
    """Resolve ``dest`` and refuse it if it lies inside one of ``study_folders``."""
    target = Path(dest).expanduser().resolve()
    for folder in study_folders:
        root = Path(folder).expanduser().resolve()
        if target == root or root in target.parents:
            raise ExportError(f"refusing to write into the study folder {root}")
    return target


def atomic_write_bytes(
    dest: Path, write: Callable[[io.BufferedWriter], None], study_folders: Collection[Path] = ()
) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``dest``, then rename it to ``dest``."""
    target = check_destination(dest, study_folders)
    return atomic_write(target, write, ExportError)  # type: ignore[arg-type]


# OWASP "CSV injection": a cell a spreadsheet would read as a formula starts with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x20), 0x7F)}


def safe_text(value: str) -> str:
    """A string cell made safe for spreadsheets and terminals: control characters (ESC, NUL,
    newlines, ...) written as ``\\xNN``, text that is not valid Unicode (file names in another
    encoding, kept by Python as surrogates) as ``\\xNN`` bytes, and a leading ``=``, ``+``,
    ``-``, ``@``, tab or CR neutralised with a ``'`` (the OWASP rule), so no cell is ever a
    formula."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text.translate(_CONTROL)


def safe_cell(value: object) -> object:
    """:func:`safe_text` for strings (recursively inside lists and dicts); numbers unchanged."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(str(k)): safe_cell(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_cell(v) for v in value]
    return value


def _csv_value(key: str, value: object) -> object:
    if key in JSON_FIELDS:
        return safe_text(json.dumps(safe_cell(value or {}), sort_keys=False))
    if value is None:
        return ""
    return safe_cell(value)


def csv_row(row: dict[str, object]) -> dict[str, object]:
    """The CSV cells of a result row (:data:`CSV_FIELDS`), made safe (:func:`safe_text`)."""
    return {k: _csv_value(k, row.get(k)) for k in CSV_FIELDS}


class CsvResultWriter:
    """Streams rows to a CSV (bounded memory for long batches); renamed into place on close.

    Use as a context manager; on an exception the partial file is removed.
    """

    def __init__(self, dest: Path, study_folders: Collection[Path] = ()) -> None:
        self.dest = check_destination(dest, study_folders)
        try:
            fd, self._tmp = temp_beside(self.dest)
        except OSError as exc:
            raise write_failure(self.dest, exc) from exc
        self._fh: TextIO = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        self.rows = 0
        self._guarded(self._writer.writeheader)

    def _guarded(self, fn: Callable[[], object]) -> None:
        """Run a write; on an OSError drop the partial file and raise a user-facing ExportError."""
        try:
            fn()
        except OSError as exc:
            self._discard()
            raise write_failure(self.dest, exc) from exc

    def _discard(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass
        Path(self._tmp).unlink(missing_ok=True)

    def write_row(self, row: dict[str, object]) -> None:
        values = csv_row(row)
        self._guarded(lambda: self._writer.writerow(values))
        self.rows += 1

    def write_result(self, result: AnalysisResult) -> None:
        for row in result_rows(result):
            self.write_row(row)

    def close(self, commit: bool = True) -> None:
        if self._fh.closed:
            return
        if not commit:
            self._discard()
            return

        def finish() -> None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.replace(self._tmp, self.dest)

        self._guarded(finish)

    def __enter__(self) -> CsvResultWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.close(commit=exc_type is None)


def write_csv(rows: Iterable[dict[str, object]], dest: Path,
              study_folders: Collection[Path] = (), *,
              deidentify: RowDeidentifier | bool = False) -> Path:
    """Write result rows (see :func:`result_rows`) as CSV, atomically.

    ``deidentify``: True or a :class:`RowDeidentifier` (share it with the DICOM exports' UID
    map) to replace file paths and SOP Instance UIDs.
    """
    with CsvResultWriter(dest, study_folders) as writer:
        for row in _maybe_deidentified(rows, deidentify):
            writer.write_row(row)
    return writer.dest


def provenance(models: Iterable[object] = ()) -> dict[str, object]:
    """Where an export comes from: radview's version, the time (UTC) and each model's id,
    version and ONNX file hash (``models``: manifests)."""
    import datetime as dt

    from viewer import __version__

    return {"radview": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "models": {str(getattr(m, "id", "")): {"version": str(getattr(m, "version", "")),
                                                   "sha256": str((getattr(m, "raw", {}) or {}).get("sha256", ""))}
                       for m in models}}


def write_json(rows: Iterable[dict[str, object]], dest: Path,
               study_folders: Collection[Path] = (), *,
               deidentify: RowDeidentifier | bool = False,
               source: dict[str, object] | None = None) -> Path:
    """Write result rows as ``{"notice": ..., "provenance": ..., "results": [...]}`` JSON,
    atomically (``deidentify`` as for :func:`write_csv`; ``source``: :func:`provenance`, made
    here without model hashes when not given)."""
    doc: dict[str, object] = {"notice": RESEARCH_NOTICE,
                              "provenance": source if source is not None else provenance(),
                              "results": [safe_cell(row) for row in _maybe_deidentified(rows, deidentify)]}
    if deidentify:
        doc["deidentified"] = "file paths and SOP Instance UIDs replaced (PS3.15 Annex E)"
    data = json.dumps(doc, indent=1).encode("utf-8")
    return atomic_write_bytes(dest, lambda fh: fh.write(data), study_folders)  # type: ignore[arg-type]


def iter_rows(results: Iterable[AnalysisResult]) -> Iterator[dict[str, object]]:
    for result in results:
        yield from result_rows(result)


def burn_notice(rgb: np.ndarray, notice: str = RESEARCH_NOTICE) -> np.ndarray:
    """Return the (H, W, 3) uint8 image with ``notice`` on a dark band added **below** it: the
    band is new rows, never the image's own pixels (a band laid over them hid the costophrenic
    angles of every exported chest film, issue 16)."""
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError("burn_notice expects an (H, W, 3) uint8 RGB image")
    h, w = img.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = 1.0
    (tw, th), base = cv2.getTextSize(notice, font, scale, 1)
    scale = max(0.3, min(1.0, 0.95 * w / max(tw, 1)))
    thickness = 1 if scale < 0.8 else 2
    (tw, th), base = cv2.getTextSize(notice, font, scale, thickness)
    band = th + base + 10
    out = np.empty((h + band, w, 3), np.uint8)
    out[:h] = img
    out[h:] = 24  # near-black strip under the image
    cv2.putText(out, notice, (max(2, (w - tw) // 2), h + band - base - 5), font, scale,
                (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def write_png(rgb: np.ndarray, dest: Path, study_folders: Collection[Path] = (),
              notice: str | None = RESEARCH_NOTICE) -> Path:
    """Save the rendered view (RGB) as PNG, with the research notice burnt in unless ``None``."""
    img = burn_notice(rgb, notice) if notice else np.asarray(rgb)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ExportError("PNG encoding failed")
    return atomic_write_bytes(dest, lambda fh: fh.write(buf.tobytes()), study_folders)  # type: ignore[arg-type]
