"""Analysis history: an SQLite database in the user data folder (path injected by the caller).

One row per image x model version x run, with the identifiers (SOP Instance UID or a content
hash), the outputs (with any population caution, the declared measurements and a multi-label
model's findings, as JSON) and the time. Each overlay (one mask per declared segment, the
heatmap) is a row of ``overlays`` holding a compressed PNG, so an entry can reopen them. The database uses WAL and one
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import cv2
import numpy as np

from viewer.services.analysis_types import AnalysisResult

__all__ = ["SCHEMA_VERSION", "HistoryEntry", "HistoryStore", "StoredOverlay", "encode_mask", "decode_mask",
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
    forced INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    caution TEXT NOT NULL DEFAULT '',
    measurements TEXT NOT NULL DEFAULT '{}',
    findings TEXT NOT NULL DEFAULT '{}',
    UNIQUE (run_id, image_id, model_id, model_version));
CREATE TABLE IF NOT EXISTS overlays (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, label TEXT NOT NULL, role TEXT NOT NULL DEFAULT '',
    png BLOB NOT NULL,
    PRIMARY KEY (entry_id, kind, label));
CREATE INDEX IF NOT EXISTS entries_image ON entries(image_id);
CREATE INDEX IF NOT EXISTS entries_created ON entries(created);
"""
# 1 -> 2: entries.caution (a result outside the model's population).
# 2 -> 3: declared outputs: entries.measurements and entries.findings (JSON), and one row of
#         ``overlays`` per mask or heatmap; the fixed columns heatmap_in_lung, mask_png and
#         heatmap_png of older databases are moved there and emptied (kept as NULL columns).
SCHEMA_VERSION = 3


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a database written by an older version up to :data:`SCHEMA_VERSION` in place.

    Runs inside the caller's transaction; a newer database (a later version of the viewer) is
    left as it is.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
    for name in ("caution", "measurements", "findings"):
        if name not in columns:
            default = "''" if name == "caution" else "'{}'"
            conn.execute(f"ALTER TABLE entries ADD COLUMN {name} TEXT NOT NULL DEFAULT {default}")
    if {"heatmap_in_lung", "mask_png", "heatmap_png"} <= columns:
        _move_fixed_columns(conn)
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version < SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _move_fixed_columns(conn: sqlite3.Connection) -> None:
    """Schema 2 -> 3: the lung share becomes the measurement ``<model>.heatmap_share.lung_field``
    (schema 2 measured it against the lung model's mask), the mask and heatmap blobs become
    overlay rows (a mask labelled by its entry's label, role ``lung_field`` for the lung model's
    "lung"; the heatmap labelled by the class it explained: the positive label, else the call)."""
    rows = conn.execute(
        "SELECT id, model_id, label, probabilities, heatmap_in_lung, mask_png, heatmap_png "
        "FROM entries WHERE heatmap_in_lung IS NOT NULL OR mask_png IS NOT NULL "
        "OR heatmap_png IS NOT NULL").fetchall()
    for entry_id, model_id, label, _probs, share, mask_png, heat_png in rows:
        if share is not None:
            key = f"{model_id}.heatmap_share.lung_field"
            conn.execute("UPDATE entries SET measurements = ? WHERE id = ?",
                         (json.dumps({key: round(float(share), 4)}), entry_id))
        if mask_png is not None:
            role = "lung_field" if label == "lung" else "region"
            conn.execute("INSERT OR REPLACE INTO overlays(entry_id, kind, label, role, png) "
                         "VALUES (?, 'mask', ?, ?, ?)", (entry_id, label or "mask", role, mask_png))
        if heat_png is not None:
            conn.execute("INSERT OR REPLACE INTO overlays(entry_id, kind, label, role, png) "
                         "VALUES (?, 'heatmap', ?, '', ?)", (entry_id, label or "heatmap", heat_png))
    conn.execute("UPDATE entries SET heatmap_in_lung = NULL, mask_png = NULL, heatmap_png = NULL "
                 "WHERE heatmap_in_lung IS NOT NULL OR mask_png IS NOT NULL "
                 "OR heatmap_png IS NOT NULL")


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
    created: float
    has_mask: bool
    has_heatmap: bool
    caution: str = ""
    measurements: Mapping[str, object] = field(default_factory=dict)  # key -> value
    findings: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @property
    def heatmap_in_lung(self) -> float | None:
        value = self.measurements.get(f"{self.model_id}.heatmap_share.lung_field")
        return float(value) if isinstance(value, (int, float)) else None


@dataclass(frozen=True)
class StoredOverlay:
    """One overlay stored with an entry (see :class:`viewer.services.analysis_types.Overlay`)."""

    kind: str  # mask | heatmap
    label: str
    role: str
    array: np.ndarray = field(repr=False, compare=False)


_COLUMNS = ("id, run_id, image_id, source, model_id, model_version, status, reason, label, band, "
            "confidence, threshold, probabilities, forced, created, "
            "EXISTS (SELECT 1 FROM overlays o WHERE o.entry_id = entries.id AND o.kind = 'mask'), "
            "EXISTS (SELECT 1 FROM overlays o WHERE o.entry_id = entries.id "
            "AND o.kind = 'heatmap'), caution, measurements, findings")


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
        rows: list[tuple[tuple[Any, ...], list[tuple[str, str, str, bytes]]]] = []
        for r in result.results:
            blobs = []
            if overlays:
                for o in r.overlays:
                    png = encode_mask(o.array) if o.kind == "mask" else encode_heatmap(o.array)
                    blobs.append((o.kind, o.label, o.role or "", png))
            rows.append(((run_id, result.image_id, result.source, r.model_id, r.model_version,
                          r.status, r.reason or "", r.label or "", r.band or "", r.confidence,
                          r.threshold, json.dumps(dict(r.probabilities)), int(r.forced), now,
                          r.caution or "",
                          json.dumps({m.key: m.as_value() for m in r.measurements}),
                          json.dumps({f.label: f.as_row() for f in r.findings})), blobs))
        ids: list[int] = []
        with self._lock, self._conn:
            for row, blobs in rows:
                cur = self._conn.execute(
                    "INSERT OR REPLACE INTO entries(run_id, image_id, source, model_id, "
                    "model_version, status, reason, label, band, confidence, threshold, "
                    "probabilities, forced, created, caution, measurements, findings) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
                entry_id = int(cur.lastrowid or 0)
                self._conn.executemany(
                    "INSERT OR REPLACE INTO overlays(entry_id, kind, label, role, png) "
                    "VALUES (?,?,?,?,?)", [(entry_id, *b) for b in blobs])
                ids.append(entry_id)
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

    def stored_overlays(self, entry_id: int) -> list[StoredOverlay]:
        """Every overlay stored with an entry (masks first, in label order)."""
        with self._lock:
            exists = self._conn.execute("SELECT 1 FROM entries WHERE id = ?", (entry_id,)).fetchone()
            rows = self._conn.execute(
                "SELECT kind, label, role, png FROM overlays WHERE entry_id = ? "
                "ORDER BY kind DESC, rowid", (entry_id,)).fetchall()
        if exists is None:
            raise KeyError(entry_id)
        return [StoredOverlay(kind, label, role,
                              decode_mask(png) if kind == "mask" else decode_heatmap(png))
                for kind, label, role, png in rows]

    def overlays(self, entry_id: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(first mask, heatmap)`` stored with an entry (either may be ``None``)."""
        stored = self.stored_overlays(entry_id)
        mask = next((o.array for o in stored if o.kind == "mask"), None)
        heat = next((o.array for o in stored if o.kind == "heatmap"), None)
        return mask, heat


def _entry(row: tuple[Any, ...]) -> HistoryEntry:
    return HistoryEntry(
        id=row[0], run_id=row[1], image_id=row[2], source=row[3], model_id=row[4],
        model_version=row[5], status=row[6], reason=row[7], label=row[8], band=row[9],
        confidence=row[10], threshold=row[11], probabilities=json.loads(row[12]),
        forced=bool(row[13]), created=row[14],
        has_mask=bool(row[15]), has_heatmap=bool(row[16]), caution=row[17] or "",
        measurements=json.loads(row[18] or "{}"), findings=json.loads(row[19] or "{}"),
    )
