"""The results of an archive-scale batch as a Parquet dataset (issue 18).

A dataset is a folder of ``part-<run>-<chunk>.parquet`` files, one per task chunk, each written
atomically (a temporary ``.``-name beside it, fsynced, renamed) by whoever analysed the chunk.
Every part has the same explicit schema: the CSV's columns (:data:`~viewer.services.export.
CSV_FIELDS`; ``probabilities`` as the same JSON text) plus ``duration_s`` (decode, models and
overlays of the image), ``host`` (the worker's host name) and the input's key ``input_path``,
``input_size``, ``input_mtime_ns``, by which a rerun skips what is already there. A file that
gives no image row (not an image, unreadable header) has one row with status ``skipped``, so a
rerun does not read it again; the merged CSV leaves those rows out, as the CSV always did.

Beside the parts, names starting with ``_`` or ``.`` (which pandas, pyarrow and DuckDB ignore):
``_radview.json`` (the models and options the dataset was made with: a rerun with others is
refused) and ``_run`` (the run that owns the dataset now: a task of an older, killed run that is
still running on a worker finds another run id there and drops its part instead of writing it).
Needs pyarrow (the ``radview[cluster]`` extra); this module is imported only when a dataset is
asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.dataset as pads  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from viewer.core.files import atomic_write
from viewer.services.export import CSV_FIELDS, JSON_FIELDS, CsvResultWriter, ExportError

__all__ = ["SKIPPED", "SCHEMA", "InputKey", "check_meta", "dedupe", "fence_holds", "iter_rows",
           "part_files", "read_index", "set_fence", "write_meta", "write_part"]

SKIPPED = "skipped"
META_NAME = "_radview.json"
FENCE_NAME = "_run"
InputKey = tuple[str, int, int]

_FLOATS = {"confidence", "threshold", "positive_probability", "duration_s"}
# The CSV's columns with their types: numbers as float64, ``forced`` as bool, the JSON-object
# cells (:data:`~viewer.services.export.JSON_FIELDS`) as the same JSON text, the rest as text.
SCHEMA = pa.schema(
    [pa.field(name, pa.float64() if name in _FLOATS else pa.bool_() if name == "forced"
              else pa.string()) for name in CSV_FIELDS]
    + [pa.field("duration_s", pa.float64()), pa.field("host", pa.string()),
       pa.field("input_path", pa.string()), pa.field("input_size", pa.int64()),
       pa.field("input_mtime_ns", pa.int64())])
_KEY_COLUMNS = ["input_path", "input_size", "input_mtime_ns"]


def _cell(name: str, value: object) -> object:
    if name in JSON_FIELDS:
        return json.dumps(value if isinstance(value, dict) else {}, sort_keys=False)
    if value is None:
        return None
    if name in _FLOATS:
        return float(value)  # type: ignore[arg-type]
    if name == "forced":
        return bool(value)
    if name in ("input_size", "input_mtime_ns"):
        return int(value)  # type: ignore[call-overload]
    return value if isinstance(value, str) else str(value)


def rows_table(rows: Iterable[dict[str, object]]) -> Any:
    """A ``pyarrow.Table`` of result rows in :data:`SCHEMA`."""
    rows = list(rows)
    columns = {f.name: [_cell(f.name, r.get(f.name)) for r in rows] for f in SCHEMA}
    return pa.table(columns, schema=SCHEMA)


def part_files(folder: Path) -> list[Path]:
    """The dataset's part files, by name."""
    return sorted(Path(folder).glob("part-*.parquet"))


def write_part(folder: Path, name: str, rows: list[dict[str, object]]) -> Path:
    """Write one part atomically; a rerun of the same chunk replaces it (same name)."""
    return _write_table(Path(folder) / name, rows_table(rows))


def _write_table(dest: Path, table: Any) -> Path:
    def write(fh: Any) -> None:
        pq.write_table(table, fh, compression="zstd")

    return atomic_write(dest, write, ExportError)


def _dataset(folder: Path) -> Any:
    return pads.dataset(str(folder), format="parquet", schema=SCHEMA,
                        exclude_invalid_files=False, ignore_prefixes=[".", "_"])


def read_index(folder: Path) -> set[InputKey]:
    """The keys ``(input_path, input_size, input_mtime_ns)`` of every input already in the
    dataset (only those three columns are read)."""
    if not part_files(folder):
        return set()
    table = _dataset(folder).to_table(columns=_KEY_COLUMNS)
    cols = [table.column(c).to_pylist() for c in _KEY_COLUMNS]
    return {(str(p), int(s), int(m)) for p, s, m in zip(*cols)}


def dedupe(folder: Path) -> int:
    """Make every input appear in one part only; returns the rows removed.

    A duplicate can only come from a task of a killed run that finished while its successor
    had started (the fence narrows that to the moment of a rename). The earliest part (by
    modification time, then name) keeps the input; later parts are rewritten without it."""
    parts = part_files(folder)
    if len(parts) < 2:
        return 0
    table = _dataset(folder).to_table(columns=[*_KEY_COLUMNS, "__filename"])
    names = table.column("__filename").to_pylist()
    keys = zip(*(table.column(c).to_pylist() for c in _KEY_COLUMNS))
    order = {str(p): (p.stat().st_mtime_ns, p.name) for p in parts}
    owner: dict[tuple[object, ...], str] = {}
    for key, name in zip(keys, names):
        best = owner.get(key)
        if best is None or order[name] < order[best]:
            owner[key] = name
    removed = 0
    for part in parts:
        t = pq.read_table(part, schema=SCHEMA)
        cols = [t.column(c).to_pylist() for c in _KEY_COLUMNS]
        keep = [owner.get(k) == str(part) for k in zip(*cols)]
        if all(keep):
            continue
        removed += keep.count(False)
        if any(keep):
            _write_table(part, t.filter(pa.array(keep)))
        else:
            part.unlink()
    return removed


def iter_rows(folder: Path, *, include_skipped: bool = False) -> Iterator[dict[str, object]]:
    """The dataset's rows, part by part (bounded memory), the JSON cells as dicts, sorted by
    file within a part; ``skipped`` rows only when asked."""
    for part in part_files(folder):
        rows = pq.read_table(part, schema=SCHEMA).to_pylist()
        rows.sort(key=lambda r: str(r["file"]))
        for row in rows:
            if row["status"] == SKIPPED and not include_skipped:
                continue
            for name in JSON_FIELDS:
                row[name] = json.loads(row.get(name) or "{}")
            yield row


def merge_csv(folder: Path, dest: Path) -> int:
    """Write the dataset's rows (not the ``skipped`` ones) as the CSV of ``radview analyze``."""
    with CsvResultWriter(dest) as writer:
        for row in iter_rows(folder):
            writer.write_row(row)
    return writer.rows


def write_meta(folder: Path, meta: dict[str, object]) -> None:
    data = json.dumps(meta, indent=1, sort_keys=True).encode()
    atomic_write(Path(folder) / META_NAME, lambda fh: fh.write(data), ExportError)


def check_meta(folder: Path, meta: dict[str, object]) -> str | None:
    """Why ``meta`` (models and options) cannot extend the dataset in ``folder``, or ``None``."""
    try:
        old = json.loads((Path(folder) / META_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return f"{folder} has an unreadable {META_NAME}: not a radview dataset?"
    for key in ("models", "force", "heatmaps"):
        if old.get(key) != meta.get(key):
            what = {"models": "other models or model versions", "force": "another --force",
                    "heatmaps": "heatmaps on/off otherwise"}[key]
            return (f"the dataset {folder} was made with {what}: give another --out, or remove "
                    "it to start over")
    return None


def set_fence(folder: Path, run_id: str) -> None:
    data = run_id.encode()
    atomic_write(Path(folder) / FENCE_NAME, lambda fh: fh.write(data), ExportError)


def fence_holds(folder: Path, run_id: str) -> bool:
    """Whether ``run_id`` still owns the dataset (no later run has started on it)."""
    try:
        return (Path(folder) / FENCE_NAME).read_text(encoding="ascii").strip() == run_id
    except (OSError, ValueError):
        return True  # no fence (removed by hand): nothing newer to protect


def dataset_rows(folder: Path) -> int:
    """How many rows the dataset holds (from the parts' metadata)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in part_files(folder))


def inputs_in(folder: Path) -> int:
    return len(read_index(folder))
