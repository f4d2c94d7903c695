"""One chunk of a batch: scan, decode, analyse, write its Parquet part (no Dask here).

The same function runs a chunk on a Dask worker (:mod:`viewer.services.cluster_dask`) and in
the embedded default (:mod:`viewer.services.batch`), so a cluster produces exactly the rows of
a local run: the headers are read by :func:`~viewer.services.library.scan_paths`, the images
decoded by a :class:`~viewer.services.decode_pool.DecodePool` and analysed by
:meth:`AnalysisService.iter_batch`, and the rows made by
:func:`~viewer.services.export.result_rows`, as ``radview analyze`` always did.

Paths: the client names files as it sees them; a worker that mounts the storage elsewhere
reads them through the path map (``--path-map CLIENT=WORKER``), and the rows keep the client's
names, so the rows do not depend on which worker analysed a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from viewer import RESEARCH_NOTICE
from viewer.core.messages import exception_words
from viewer.dicom.scan import InstanceRecord
from viewer.services.ai_session import model_folders
from viewer.services.analysis_types import AnalysisInput, AnalysisResult

__all__ = ["BatchSettings", "Chunk", "ChunkSummary", "InputFile", "WorkerState", "error_reason",
           "map_path", "model_fingerprint", "process_chunk", "InlineExecutor"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)  # a million of them on the client
class InputFile:
    """A file to analyse as the client sees it, with its resume key."""

    path: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.path, self.size, self.mtime_ns)

    def __repr__(self) -> str:  # reprs reach Dask's logs: no file names
        return f"InputFile({self.size} bytes)"


@dataclass(frozen=True)
class Chunk:
    """One task: a few files, and the part file its rows go to."""

    number: int
    files: tuple[InputFile, ...]
    part: str

    def __repr__(self) -> str:
        return f"Chunk({self.number}, {len(self.files)} file(s))"


@dataclass(frozen=True)
class BatchSettings:
    """What every chunk of one run needs (small: it travels with every task)."""

    out: str  # the dataset folder, as the client names it
    run_id: str
    fingerprint: str  # the models the client expects (id, version, sha256)
    models: tuple[str, ...] | None = None
    force: bool = False
    masks: str | None = None
    heatmaps: str | None = None
    models_dirs: tuple[str, ...] = ()
    threads: int = 1
    path_map: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        return f"BatchSettings(run {self.run_id}, models {self.fingerprint})"


@dataclass
class ChunkSummary:
    """What a chunk did (no rows: they are in its part file)."""

    number: int
    files: int = 0
    images: int = 0
    rows: int = 0
    errors: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason), for the client
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    host: str = ""
    written: bool = False  # False: a newer run owns the dataset; nothing was written


def map_path(path: str, pairs: Sequence[tuple[str, str]], reverse: bool = False) -> str:
    """``path`` with the first matching prefix replaced (client -> worker, or back)."""
    for client, worker in pairs:
        src, dst = (worker, client) if reverse else (client, worker)
        if path == src or path.startswith(src.rstrip("/") + "/"):
            return dst.rstrip("/") + path[len(src.rstrip("/")):]
    return path


def model_fingerprint(models: Sequence[Any]) -> str:
    """A short hash of the available models' ids, versions and ONNX hashes."""
    text = "|".join(sorted(f"{m.id}={m.version}={(m.raw or {}).get('sha256', '')}" for m in models))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def error_reason(exc: BaseException) -> str:
    """An image's error row: our own message for a LoadError, else a category (never a
    library's exception text); as ``radview analyze`` writes it."""
    if type(exc).__name__ == "LoadError":
        return str(exc)
    return exception_words(exc)


class InlineExecutor(Executor):
    """Runs each task at once in the calling thread (a Dask worker thread runs one chunk)."""

    def submit(self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> Future[_T]:
        fut: Future[_T] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


class WorkerState:
    """What a worker loads once: the models, their sessions, the decoders.

    ``decode_workers``: decoding processes (a native decoder crash or hang then costs one file,
    not the worker); 0 where the process may not start children (a daemonic Dask worker), and
    a crash then ends the worker, which Dask replaces and the client isolates (one error row).
    """

    def __init__(self, settings: BatchSettings, decode_workers: int) -> None:
        from viewer.inference.registry import ModelRegistry
        from viewer.inference.sessions import SessionPool
        from viewer.services.analysis import AnalysisService
        from viewer.services.decode_pool import DecodePool

        self.host = socket.gethostname()
        dirs = [Path(map_path(d, settings.path_map)) for d in settings.models_dirs]
        self.registry = ModelRegistry.default(model_folders(dirs))
        self.fingerprint = model_fingerprint(self.registry.available())
        self.service = AnalysisService(self.registry, SessionPool(max(1, settings.threads)))
        for m in self.registry.available():  # sessions created here, once, not in a task
            self.service.sessions.get(m.onnx_path)
        self.decoder = DecodePool(workers=decode_workers)

    def close(self) -> None:
        self.decoder.shutdown()


class _Overlays:
    """Masks and heatmap views (names from :mod:`viewer.services.declared_exports`) under a stem
    that cannot collide: the file's stem and a hash of its full (client) name; a chunk run twice
    writes the same names again."""

    def __init__(self, service: Any, masks: Path | None, heatmaps: Path | None,
                 client_source: Callable[[str], str]) -> None:
        self.service, self.masks, self.heatmaps = service, masks, heatmaps
        self._client = client_source

    def __call__(self, inp: AnalysisInput, result: AnalysisResult) -> None:
        import cv2

        from viewer.services.declared_exports import (
            heatmap_file_name, heatmap_picture, mask_file_name,
        )

        name = self._client(inp.source)
        tag = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
        stem = f"{Path(name.split('!')[-1]).stem or 'image'}-{tag}"
        grey = None
        for r in result.results:
            if self.masks is not None:
                for o in r.overlays_of("mask"):
                    _write_png(self.masks / mask_file_name(stem, r, o.label),
                               (o.array > 0).astype(np.uint8) * 255)
            if self.heatmaps is None:
                continue
            maps = [(o.label, o.array) for o in r.overlays_of("heatmap")]
            if r.multilabel and maps and r.cams is not None:  # every positive finding's map
                have = {label for label, _ in maps}
                maps += [(f.label, self.service.heatmap_for(r, f.label, result.image_shape))
                         for f in r.findings if f.positive and f.label not in have]
            for label, heat in maps:
                if grey is None:
                    grey = inp.display if inp.display.ndim == 2 else cv2.cvtColor(
                        inp.display, cv2.COLOR_RGB2GRAY)
                _write_png(self.heatmaps / heatmap_file_name(stem, r, label),
                           cv2.cvtColor(heatmap_picture(grey, heat), cv2.COLOR_RGB2BGR))


def _write_png(path: Path, img: np.ndarray) -> None:
    import cv2

    from viewer.services.export import ExportError, atomic_write_bytes

    # Level 1, as radview analyze: radiographs barely compress better at higher levels.
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ExportError(f"cannot encode {path.name}")
    data = buf.tobytes()

    def write(fh: Any) -> None:
        fh.write(data)

    atomic_write_bytes(path, write)


def process_chunk(state: WorkerState, settings: BatchSettings, chunk: Chunk,
                  executor: Executor | None = None, in_flight: int = 1) -> ChunkSummary:
    """Analyse a chunk's files and write its part; returns its counts.

    Raises ``ExportError`` when the part or an overlay cannot be written (the run must stop)."""
    from viewer.services.analysis_inputs import input_from_record
    from viewer.services.cluster_dataset import SKIPPED, fence_holds, write_part
    from viewer.services.export import ExportError, result_rows
    from viewer.services.library import scan_paths

    t0 = time.perf_counter()
    summary = ChunkSummary(chunk.number, files=len(chunk.files), host=state.host)
    pairs = settings.path_map
    by_worker = {map_path(f.path, pairs): f for f in chunk.files}
    scan = scan_paths(list(by_worker), workers=1)
    records = [r for r in scan.index.records() if r.is_image]

    def client_source(worker_source: str) -> str:
        return map_path(worker_source, pairs, reverse=True)

    def key_of(worker_path: str) -> InputFile:
        return by_worker.get(worker_path) or InputFile(client_source(worker_path), 0, 0)

    rows: list[dict[str, object]] = []

    def extra(worker_path: str, seconds: float | None) -> dict[str, object]:
        f = key_of(worker_path)
        return {"duration_s": seconds, "host": state.host, "input_path": f.path,
                "input_size": f.size, "input_mtime_ns": f.mtime_ns}

    started = threading.local()
    durations: dict[str, float] = {}

    def load(record: InstanceRecord) -> AnalysisInput:
        started.t0 = time.perf_counter()
        try:
            return input_from_record(record, load=state.decoder.load_image)
        except Exception:
            durations[record.source] = time.perf_counter() - started.t0
            raise

    masks = Path(map_path(settings.masks, pairs)) if settings.masks else None
    heat = Path(map_path(settings.heatmaps, pairs)) if settings.heatmaps else None
    overlays = _Overlays(state.service, masks, heat, client_source) if (masks or heat) else None

    def on_analysed(inp: AnalysisInput, result: AnalysisResult) -> None:
        if overlays is not None:
            overlays(inp, result)
        durations[inp.source] = time.perf_counter() - started.t0

    wanted = set(settings.models) if settings.models is not None else None
    for record, value in state.service.iter_batch(
            records, load, executor or InlineExecutor(), in_flight=max(1, in_flight),
            keep_arrays=False, on_analysed=on_analysed, models=wanted, force=settings.force,
            heatmaps=heat is not None):
        source = record.source
        if isinstance(value, ExportError):
            raise value
        summary.images += 1
        more = extra(record.path, durations.pop(source, None))
        if isinstance(value, BaseException):
            summary.errors += 1
            rows.append({"file": client_source(source), "image_id": record.sop_instance_uid,
                         "model_id": "", "model_version": "", "status": "error",
                         "reason": error_reason(value), "probabilities": {},
                         "notice": RESEARCH_NOTICE, **more})
            continue
        image_rows = result_rows(value)
        summary.errors += any(r["status"] == "error" for r in image_rows)
        summary.messages.extend(m for m in value.messages if m not in summary.messages)
        rows.extend({**r, "file": client_source(source), **more} for r in image_rows)
    # A file that gave no image is one "skipped" row (so a rerun does not read it again).
    analysed = {r.path for r in records}
    reasons: dict[str, list[str]] = {}
    for p in scan.problems:
        reasons.setdefault(p.path, []).append(p.reason)
    for worker_path in by_worker:
        if worker_path in analysed:
            continue
        why = "; ".join(reasons.get(worker_path, [])) or "no image in this file"
        summary.skipped.append((by_worker[worker_path].path, why))
        rows.append({"file": by_worker[worker_path].path, "image_id": "", "model_id": "",
                     "model_version": "", "status": SKIPPED, "reason": why,
                     "probabilities": {}, "notice": RESEARCH_NOTICE, **extra(worker_path, None)})
    summary.rows = sum(1 for r in rows if r["status"] != SKIPPED)
    out = Path(map_path(settings.out, pairs))
    if fence_holds(out, settings.run_id):
        write_part(out, chunk.part, rows)
        summary.written = True
    summary.seconds = time.perf_counter() - t0
    log.info("chunk %d: %d file(s), %d image(s), %d error(s) in %.1f s", chunk.number,
             summary.files, summary.images, summary.errors, summary.seconds)
    return summary


def crashed_rows(settings: BatchSettings, f: InputFile, why: str) -> list[dict[str, object]]:
    """The one error row of a file whose analysis ended its worker every time."""
    name = os.path.basename(f.path)
    return [{"file": f.path, "image_id": "", "model_id": "", "model_version": "",
             "status": "error", "reason": f"{name}: {why}", "probabilities": {},
             "notice": RESEARCH_NOTICE, "duration_s": None, "host": "",
             "input_path": f.path, "input_size": f.size, "input_mtime_ns": f.mtime_ns}]
