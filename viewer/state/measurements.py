"""The measurements of each image, kept for the session and persisted across sessions.

Qt-free. Keyed by :func:`viewer.core.measure.image_key` (a SHA-256 of the SOP Instance UID or
the file identity, and the frame), never by patient data. With a ``folder`` (the user data
folder, never a study folder) each image's measurements are one small JSON file
``<key>.json`` there, written when they change and removed when they are cleared; the file
holds kinds, points in image pixels, the user's own text and calibration lengths only.

A file that cannot be read or parsed is treated as "no measurements" (logged without its
path); it is never a crash.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from viewer.core.measure import (
    EXPORT_COLUMNS, ImageMeasurements, image_state_from_dict, image_state_to_dict,
)

__all__ = ["MeasurementStore", "write_export"]

log = logging.getLogger("viewer.state.measurements")


class MeasurementStore:
    """Per-image measurements: a session dictionary in front of an optional folder."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        self._session: dict[str, ImageMeasurements] = {}

    def _file(self, key: str) -> Path | None:
        if self.folder is None or not key or not all(c in "0123456789abcdef" for c in key):
            return None
        return self.folder / f"{key}.json"

    def get(self, key: str) -> ImageMeasurements:
        """The image's measurements (from this session, else from its file, else none)."""
        if key in self._session:
            return self._session[key]
        state = ImageMeasurements()
        path = self._file(key)
        if path is not None and path.is_file():
            try:
                state = image_state_from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                log.warning("measurements file unreadable (%s); ignored", type(exc).__name__)
        self._session[key] = state
        return state

    def put(self, key: str, state: ImageMeasurements) -> None:
        """Keep ``state`` for the image and write (or remove) its file."""
        self._session[key] = state
        path = self._file(key)
        if path is None:
            return
        try:
            if not state.items:
                path.unlink(missing_ok=True)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            text = json.dumps(image_state_to_dict(state), indent=1)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".m-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                fp.write(text)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("measurements not saved (%s)", type(exc).__name__)


def write_export(rows: Sequence[dict[str, Any]], dest: Path) -> Path:
    """Rows of :func:`viewer.core.measure.export_rows` as CSV, or JSON when ``dest`` ends in
    ``.json``. The caller has checked that ``dest`` is not in a study folder."""
    dest = Path(dest)
    if dest.suffix.lower() == ".json":
        dest.write_text(json.dumps({"measurements": list(rows)}, indent=1, ensure_ascii=False),
                        encoding="utf-8")
        return dest
    with dest.open("w", newline="", encoding="utf-8") as fp:
        writer = csv.DictWriter(fp, fieldnames=list(EXPORT_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return dest
