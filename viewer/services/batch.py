"""Archive-scale batch analysis into a Parquet dataset, here or on a Dask cluster (issue 18).

``run_batch(paths, out=..., client=None)``: the files under ``paths`` are listed once, here
(never on every worker), keyed by path, size and modification time, and those already in the
dataset at ``out`` are skipped (a rerun resumes). The rest are cut into chunks; each chunk is
one task that scans, decodes and analyses its files with the same code as ``radview analyze``
(:func:`viewer.services.cluster_task.process_chunk`) and writes one Parquet part. With
``client=None`` (the embedded default) the chunks run in this process and Dask is not imported;
with a ``dask.distributed.Client`` they run on its workers (:mod:`viewer.services.cluster_dask`),
which must read the input files and write ``out`` on storage they share with this machine
(the same paths, or ``path_map`` pairs ``(client_prefix, worker_prefix)``).

``out`` ending in ``.csv`` or ``.json``: the dataset is kept in ``<out>.parts`` and merged into
``out`` at the end (a rerun resumes from the parts). Anything else is the dataset folder.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viewer.dicom.scan import LoadProblem
from viewer.services.cluster_task import (
    BatchSettings, Chunk, ChunkSummary, InputFile, WorkerState, model_fingerprint,
    process_chunk,
)

__all__ = ["BatchReport", "BatchUsageError", "auto_chunk_size", "dataset_folder", "list_inputs",
           "make_chunks", "run_batch"]

# A chunk's fixed costs (a task's round trip through the scheduler, opening its part file) are
# ~10-30 ms; an image costs 50-100 ms of CPU with the four models. 8 images keep them under 5 %;
# at least 8 chunks per worker slot balance the end of the run; 256 bounds what one lost
# worker costs, and the scheduler's task count for a million files (~4,000 tasks).
MIN_CHUNK, MAX_CHUNK, CHUNKS_PER_SLOT = 8, 256, 8
# Problems met listing the inputs that mean images were missed (as ``radview analyze``).
DICOMDIR_FAILURES = ("file listed in DICOMDIR is missing", "a DICOMDIR record", "unreadable DICOMDIR",
                     "the DICOMDIR lists no files", "entry listed in DICOMDIR")


class BatchUsageError(ValueError):
    """The batch cannot start as asked (the message is for the user)."""


@dataclass
class BatchReport:
    """What a run did."""

    dataset: Path
    files: int = 0  # listed under the paths
    resumed: int = 0  # already in the dataset, skipped
    chunks: int = 0
    done_files: int = 0
    images: int = 0
    rows: int = 0
    errors: int = 0
    problems: list[LoadProblem] = field(default_factory=list)  # from listing the paths
    skipped: list[tuple[str, str]] = field(default_factory=list)  # files without an image
    messages: list[str] = field(default_factory=list)
    duplicates_removed: int = 0
    merged: Path | None = None
    seconds: float = 0.0
    dashboard: str | None = None


ProgressCb = Callable[[BatchReport, ChunkSummary | None], None]


def dataset_folder(out: Path) -> Path:
    """Where the parts of ``out`` live."""
    out = Path(out)
    return out.with_name(out.name + ".parts") if out.suffix.lower() in (".csv", ".json") else out


def list_inputs(paths: Sequence[str]) -> tuple[list[InputFile], list[LoadProblem]]:
    """Every candidate file under ``paths`` (folders walked once, DICOMDIRs followed, zips as
    one file each), with its size and modification time."""
    from viewer.services.discovery import discover
    from viewer.services.tasks import CancelToken

    found = discover(paths, CancelToken())
    files: list[InputFile] = []
    problems = list(found.problems)
    for path in [*found.files, *found.zips]:
        try:
            st = os.stat(path)
        except OSError as exc:
            problems.append(LoadProblem(path, f"cannot read: {exc.strerror or 'error'}"))
            continue
        files.append(InputFile(path, st.st_size, st.st_mtime_ns))
    return files, problems


def auto_chunk_size(n_files: int, slots: int) -> int:
    """Files per task: at least :data:`CHUNKS_PER_SLOT` chunks per worker thread, within
    [:data:`MIN_CHUNK`, :data:`MAX_CHUNK`]."""
    return max(MIN_CHUNK, min(MAX_CHUNK, -(-n_files // max(1, slots * CHUNKS_PER_SLOT))))


def make_chunks(files: Sequence[InputFile], size: int, run_id: str) -> list[Chunk]:
    size = max(1, size)
    return [Chunk(n, tuple(files[i:i + size]), f"part-{run_id}-{n:06d}.parquet")
            for n, i in enumerate(range(0, len(files), size))]


def _meta(models: Iterable[Any], settings: BatchSettings) -> dict[str, object]:
    from viewer import __version__

    wanted = settings.models
    return {"radview": __version__,
            "models": {m.id: {"version": m.version, "sha256": (m.raw or {}).get("sha256", "")}
                       for m in models if wanted is None or m.id in wanted or m.gate},
            "force": settings.force, "heatmaps": settings.heatmaps is not None}


def run_batch(paths: Sequence[str | os.PathLike[str]], *, out: str | os.PathLike[str],
              models: Iterable[str] | None = None, force: bool = False,
              models_dirs: Sequence[str | os.PathLike[str]] = (),
              masks: str | os.PathLike[str] | None = None,
              heatmaps: str | os.PathLike[str] | None = None,
              client: Any = None, chunk_size: int | None = None,
              path_map: Sequence[tuple[str, str]] = (), threads: int = 1, workers: int = 2,
              progress: ProgressCb | None = None,
              on_start: Callable[[BatchReport], None] | None = None) -> BatchReport:
    """Analyse every image under ``paths`` into the Parquet dataset ``out``; see the module.

    Parameters
    ----------
    client
        A ``dask.distributed.Client``; ``None`` runs here (``workers`` images at once).
    chunk_size
        Files per task (default :func:`auto_chunk_size`).
    path_map
        ``(client_prefix, worker_prefix)`` pairs for workers that mount the storage elsewhere.
    threads
        onnxruntime threads per session run (per worker).
    progress, on_start
        Called after each chunk (and with ``None`` once the models are loaded), and once the
        work is planned (``report.files`` known).

    Raises ``BatchUsageError`` (bad options, another dataset) and ``ExportError`` (an output
    cannot be written).
    """
    from viewer.inference.registry import ModelRegistry
    from viewer.services.ai_session import model_folders
    from viewer.services import cluster_dataset as ds
    from viewer.services.export import check_destination

    t0 = time.perf_counter()
    str_paths = [os.path.abspath(os.fspath(p)) for p in paths]
    target = Path(os.path.abspath(os.fspath(out)))
    folder = dataset_folder(target)
    study = [Path(p) if os.path.isdir(p) else Path(p).parent for p in str_paths]
    from viewer.services.export import ExportError
    try:
        for dest in (target, folder, masks, heatmaps):
            if dest is not None:
                check_destination(Path(dest), study)
    except ExportError as exc:
        raise BatchUsageError(str(exc)) from None
    registry = ModelRegistry.default(model_folders(Path(d) for d in models_dirs))
    wanted = tuple(sorted({m.strip() for m in models if m.strip()})) if models is not None else None
    settings = BatchSettings(
        out=str(folder), run_id=uuid.uuid4().hex[:12],
        fingerprint=model_fingerprint(registry.available()), models=wanted, force=force,
        masks=os.path.abspath(masks) if masks else None,
        heatmaps=os.path.abspath(heatmaps) if heatmaps else None,
        models_dirs=tuple(os.path.abspath(d) for d in models_dirs), threads=max(1, threads),
        path_map=tuple((os.path.abspath(a), b) for a, b in path_map))
    meta = _meta(registry.available(), settings)
    folder.mkdir(parents=True, exist_ok=True)
    mismatch = ds.check_meta(folder, meta)
    if mismatch:
        raise BatchUsageError(mismatch)
    ds.write_meta(folder, meta)
    ds.set_fence(folder, settings.run_id)  # from here on, tasks of an older run write nothing
    for d in (masks, heatmaps):
        if d:
            Path(d).mkdir(parents=True, exist_ok=True)
    files, problems = list_inputs(str_paths)
    report = BatchReport(folder, files=len(files), problems=problems)
    done = ds.read_index(folder)
    todo = [f for f in files if f.key not in done]
    report.resumed = len(files) - len(todo)
    slots = _slots(client, workers)
    chunks = make_chunks(todo, chunk_size or auto_chunk_size(len(todo), slots), settings.run_id)
    report.chunks = len(chunks)

    def account(summary: ChunkSummary) -> None:
        report.done_files += summary.files
        report.images += summary.images
        report.rows += summary.rows
        report.errors += summary.errors
        report.skipped.extend(summary.skipped)
        report.messages.extend(m for m in summary.messages if m not in report.messages)
        if progress is not None:
            progress(report, summary)

    def ready() -> None:
        if progress is not None:
            progress(report, None)

    if client is None:
        if on_start is not None:
            on_start(report)
        _run_here(settings, chunks, workers, account, ready)
    else:
        from viewer.services.cluster_dask import dashboard_link, run_on_client

        report.dashboard = dashboard_link(client)
        if on_start is not None:
            on_start(report)
        run_on_client(client, settings, chunks, account, ready=ready)
    report.duplicates_removed = ds.dedupe(folder)
    if target != folder:
        if target.suffix.lower() == ".json":
            from viewer.services.export import provenance, write_json

            write_json(ds.iter_rows(folder), target, source=provenance(registry.available()))
        else:
            ds.merge_csv(folder, target)
        report.merged = target
    report.seconds = time.perf_counter() - t0
    return report


def _slots(client: Any, workers: int) -> int:
    if client is None:
        return max(1, workers)
    try:
        return max(1, int(sum(client.nthreads().values())))
    except Exception:
        return 1


def _run_here(settings: BatchSettings, chunks: Sequence[Chunk], workers: int,
              account: Callable[[ChunkSummary], None], ready: Callable[[], None]) -> None:
    """The embedded default: one chunk after another, ``workers`` images of it at once."""
    if not chunks:
        return
    state = WorkerState(settings, decode_workers=max(1, workers))
    ready()
    try:
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="analyze") as pool:
            for chunk in chunks:
                account(process_chunk(state, settings, chunk, pool, in_flight=2 * max(1, workers)))
    finally:
        state.close()
