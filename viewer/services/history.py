"""Analysis history: an SQLite database in the user data folder (path injected by the caller).

One row per image x model version x run, with the identifiers (SOP Instance UID or a content
hash), the outputs (with any population caution) and the time. Masks and heatmaps are stored
as compressed PNG blobs so an entry can reopen its overlays. The database uses WAL and one
transaction per write; ``PRAGMA user_version`` is the schema version, and an older database is
migrated in place when opened. A database that SQLite cannot read is moved aside (renamed with
a timestamp) and a fresh one is created; the message saying so is kept in
:attr:`HistoryStore.messages` for the UI, never silently lost.
"""

from __future__ import annotations

from viewer.core.messages import exception_words

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import cv2
import numpy as np

from viewer.services.analysis_types import AnalysisResult

__all__ = ["SCHEMA_VERSION", "HistoryEntry", "HistoryStore", "encode_mask", "decode_mask",
           "encode_heatmap", "decode_heatmap"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started REAL NOT NULL, note TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    image_id TEXT NOT NULL, source TEXT NOT NULL,
    model_id TEXT NOT NULL, model_version TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    label TEXT NOT NULL DEFAULT '', band TEXT NOT NULL DEFAULT '',
    confidence REAL, threshold REAL, probabilities TEXT NOT NULL DEFAULT '{}',
    forced INTEGER NOT NULL DEFAULT 0, heatmap_in_lung REAL,
    created REAL NOT NULL, mask_png BLOB, heatmap_png BLOB,
    caution TEXT NOT NULL DEFAULT '',
    UNIQUE (run_id, image_id, model_id, model_version));
CREATE INDEX IF NOT EXISTS entries_image ON entries(image_id);
CREATE INDEX IF NOT EXISTS entries_created ON entries(created);
"""
SCHEMA_VERSION = 2  # 1 -> 2: entries.caution (a result outside the model's population)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database written by an older version up to :data:`SCHEMA_VERSION` in place.

    Runs inside the caller's transaction; a newer database (a later version of the viewer) is
    left as it is.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    if "caution" not in columns:
        conn.execute("ALTER TABLE entries ADD COLUMN caution TEXT NOT NULL DEFAULT ''")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def encode_mask(mask: np.ndarray) -> bytes:
    """uint8 label mask -> lossless PNG bytes."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(mask, dtype=np.uint8),
                           [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_mask(blob: bytes) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError("stored mask is not a readable PNG")
    return np.asarray(arr)


def encode_heatmap(heatmap: np.ndarray) -> bytes:
    """float heatmap in [0, 1] -> 16-bit PNG (quantisation step 1/65535)."""
    q = np.rint(np.clip(heatmap, 0.0, 1.0) * 65535.0).astype(np.uint16)
    ok, buf = cv2.imencode(".png", q, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_heatmap(blob: bytes) -> np.ndarray:
    q = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    if q is None:
        raise ValueError("stored heatmap is not a readable PNG")
    return np.asarray(q.astype(np.float32) / np.float32(65535.0))


@dataclass(frozen=True)
class HistoryEntry:
    """One stored model outcome (without its overlays; see :meth:`HistoryStore.overlays`)."""

    id: int
    run_id: int
    image_id: str
    source: str
    model_id: str
    model_version: str
    status: str
    reason: str
    label: str
    band: str
    confidence: float | None
    threshold: float | None
    probabilities: Mapping[str, float]
    forced: bool
    heatmap_in_lung: float | None
    created: float
    has_mask: bool
    has_heatmap: bool
    caution: str = ""


_COLUMNS = ("id, run_id, image_id, source, model_id, model_version, status, reason, label, band, "
            "confidence, threshold, probabilities, forced, heatmap_in_lung, created, "
            "mask_png IS NOT NULL, heatmap_png IS NOT NULL, caution")


class HistoryStore:
    """Thread-safe access to the history database.

    Parameters
    ----------
    db_path
        The SQLite file, e.g. ``<user data folder>/history.sqlite``; its folder is created.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = Path(db_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            moved = self._move_aside()
            self.messages.append(
                f"The history database could not be read ({exception_words(exc)}); it was kept as {moved.name} "
                "and a new, empty history was started.")
            self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            check = conn.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            with conn:
                conn.executescript(_SCHEMA)
                _migrate(conn)
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        self.path.rename(target)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.rename(target.with_name(target.name + suffix))
        return target

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ----------------------------------------------------------------------------
    def new_run(self, note: str = "") -> int:
        """Start a run (one click of "Analyse", one batch, one CLI call); returns its id."""
        with self._lock, self._conn:
            cur = self._conn.execute("INSERT INTO runs(started, note) VALUES (?, ?)",
                                     (time.time(), note))
            return int(cur.lastrowid or 0)

    def record(self, run_id: int, result: AnalysisResult, *, overlays: bool = True) -> list[int]:
        """Store every model outcome of ``result`` in one transaction; returns the entry ids."""
        now = time.time()
        rows: list[tuple[Any, ...]] = []
        for r in result.results:
            mask = encode_mask(r.mask) if overlays and r.mask is not None else None
            heat = encode_heatmap(r.heatmap) if overlays and r.heatmap is not None else None
            rows.append((run_id, result.image_id, result.source, r.model_id, r.model_version,
                         r.status, r.reason or "", r.label or "", r.band or "", r.confidence,
                         r.threshold, json.dumps(dict(r.probabilities)), int(r.forced),
                         r.heatmap_in_lung, now, mask, heat, r.caution or ""))
        ids: list[int] = []
        with self._lock, self._conn:
            for row in rows:
                cur = self._conn.execute(
                    "INSERT OR REPLACE INTO entries(run_id, image_id, source, model_id, "
                    "model_version, status, reason, label, band, confidence, threshold, "
                    "probabilities, forced, heatmap_in_lung, created, mask_png, heatmap_png, "
                    "caution) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
                ids.append(int(cur.lastrowid or 0))
        return ids

    # ---- reading ----------------------------------------------------------------------------
    def entries(
        self,
        *,
        image_id: str | None = None,
        model_id: str | None = None,
        status: str | None = None,
        label: str | None = None,
        run_id: int | None = None,
        text: str | None = None,
        since: float | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[HistoryEntry]:
        """Entries matching every given filter, newest first.

        ``text`` matches a substring of the source path, image id, model id or label.
        """
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("image_id", image_id), ("model_id", model_id),
                              ("status", status), ("label", label), ("run_id", run_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("created >= ?")
            args.append(since)
        if text:
            where.append("(source LIKE ? OR image_id LIKE ? OR model_id LIKE ? OR label LIKE ?)")
            args.extend([f"%{text}%"] * 4)
        sql = f"SELECT {_COLUMNS} FROM entries"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created DESC, id DESC LIMIT ? OFFSET ?"
        args.extend([int(limit), int(offset)])
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [_entry(row) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def overlays(self, entry_id: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(mask, heatmap)`` stored with an entry (either may be ``None``)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT mask_png, heatmap_png FROM entries WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            raise KeyError(entry_id)
        mask = decode_mask(row[0]) if row[0] is not None else None
        heat = decode_heatmap(row[1]) if row[1] is not None else None
        return mask, heat


def _entry(row: tuple[Any, ...]) -> HistoryEntry:
    return HistoryEntry(
        id=row[0], run_id=row[1], image_id=row[2], source=row[3], model_id=row[4],
        model_version=row[5], status=row[6], reason=row[7], label=row[8], band=row[9],
        confidence=row[10], threshold=row[11], probabilities=json.loads(row[12]),
        forced=bool(row[13]), heatmap_in_lung=row[14], created=row[15],
        has_mask=bool(row[16]), has_heatmap=bool(row[17]), caution=row[18] or "",
    )
