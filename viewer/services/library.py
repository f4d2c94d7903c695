"""Study library: scan what the user opened into a Patient > Study > Series > Instance index,
and load images (DICOM or PNG/JPEG) from its records.

Qt-free. :func:`scan_paths` is meant to run on a worker thread (the GUI thread never waits on
it). Headers are read by a small dedicated parser (:mod:`viewer.dicom.fastheader`, pydicom as
fallback). For very large folders, or when the caller supplies a long-lived process pool, chunks
of files are fanned out to worker processes (spawn context, safe with a GUI's threads) while
this thread scans chunks too; threads would serialise on the GIL (FIELD-NOTES: a thread pool is
slower than one thread).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from viewer.core.radiograph import VOI, Radiograph
from viewer.dicom.load import LoadError, check_frame_size, load_radiograph, read_member
from viewer.dicom.scan import (
    InstanceRecord, LoadProblem, image_kind, image_samples, image_size, scan_files, undecodable_problem,
)
from viewer.services.discovery import discover, scan_zip
from viewer.services.image_cache import ImageCache
from viewer.services.support_log import file_token, log_file_error, problem_category, register_opened
from viewer.services.tasks import CancelToken, ProgressFn, no_progress
from viewer.core.files import open_regular
from viewer.core.messages import exception_words

__all__ = [
    "ImageCache",
    "InstanceRecord",
    "LoadError",
    "LoadProblem",
    "PatientNode",
    "ScanResult",
    "SeriesNode",
    "StudyIndex",
    "StudyNode",
    "load_image",
    "scan_paths",
]

# Process-pool thresholds, from bench/scan.py on the 2-core target machine under load: the fast
# header reader scans 2,700-5,200 files/s in one thread, while spawning 2 workers costs 0.3-3 s
# of CPU (interpreter + imports) and made a 10,000-file scan slower (1,400-1,600 files/s). A pool
# started per scan therefore pays off only for very large folders; a long-lived pool passed in
# as ``executor`` (already started) is used from a few thousand files on. GUI smoothness does not
# argue for the pool either: with a thread ticking every 2 ms in the same process, a 10,000-file
# scan on one worker thread left gaps of p99 12-14 ms / max 23 ms, a warm 2-process pool p99
# 25-30 ms / max 44-85 ms (the workers compete with the GUI process for the 2 cores).
POOL_THRESHOLD = 20_000
WARM_POOL_THRESHOLD = 2_000

# PNG/JPEG: decoded bytes allowed (RGB images take ~8x that at the peak; 160 MiB is ~55 MP RGB,
# ~84 MP 16-bit grey; 8-bit grey stays under the 100-megapixel frame limit first).
MAX_PLAIN_DECODED_BYTES = 160 * 1024**2

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------


def _instance_sort_key(rec: InstanceRecord) -> tuple[int, str, str]:
    return (rec.instance_number, rec.path, rec.member or "")


@dataclass
class SeriesNode:
    """One (0020,000E) Series Instance UID and its instances."""

    uid: str
    number: int = 0
    description: str = ""
    modality: str = ""
    body_part: str = ""
    instances: list[InstanceRecord] = field(default_factory=list)

    @property
    def label(self) -> str:
        bits = [self.modality, f"#{self.number}" if self.number else "", self.description or self.body_part]
        return " ".join(b for b in bits if b) or "Series"

    @property
    def count(self) -> int:
        return len(self.instances)

    def sorted_instances(self) -> list[InstanceRecord]:
        return sorted(self.instances, key=_instance_sort_key)


@dataclass
class StudyNode:
    """One (0020,000D) Study Instance UID and its series."""

    uid: str
    date: str = ""
    time: str = ""
    description: str = ""
    accession_number: str = ""
    series: dict[str, SeriesNode] = field(default_factory=dict)

    @property
    def label(self) -> str:
        date = f"{self.date[:4]}-{self.date[4:6]}-{self.date[6:8]}" if len(self.date) == 8 else self.date
        return " ".join(b for b in (date, self.description) if b) or "Study"

    @property
    def count(self) -> int:
        return sum(s.count for s in self.series.values())

    def sorted_series(self) -> list[SeriesNode]:
        return sorted(self.series.values(), key=lambda s: (s.number, s.description, s.uid))


@dataclass
class PatientNode:
    """One patient, identified by (0010,0020) Patient ID and (0010,0010) Patient's Name."""

    key: tuple[str, str]
    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    studies: dict[str, StudyNode] = field(default_factory=dict)

    @property
    def label(self) -> str:
        name = self.name.replace("^", " ").strip()
        return " ".join(b for b in (name, f"({self.patient_id})" if self.patient_id else "") if b) \
            or "(no patient)"

    @property
    def count(self) -> int:
        return sum(s.count for s in self.studies.values())

    def sorted_studies(self) -> list[StudyNode]:
        # Newest first, as reading lists usually are.
        return sorted(self.studies.values(), key=lambda s: (s.date, s.time, s.uid), reverse=True)


Node = PatientNode | StudyNode | SeriesNode


class StudyIndex:
    """Patient > Study > Series > Instance tree built from :class:`InstanceRecord` objects.

    A record is identified by ``(path, member)``; adding it twice keeps one copy.
    """

    def __init__(self, records: Iterable[InstanceRecord] = ()) -> None:
        self._patients: dict[tuple[str, str], PatientNode] = {}
        self._keys: dict[tuple[str, str | None], InstanceRecord] = {}
        self.add(records)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, rec: object) -> bool:
        return isinstance(rec, InstanceRecord) and rec.key in self._keys

    def add(self, records: Iterable[InstanceRecord]) -> int:
        """Add records; returns how many were new."""
        added = 0
        for rec in records:
            if rec.key in self._keys:
                continue
            self._keys[rec.key] = rec
            added += 1
            pkey = (rec.patient_id, rec.patient_name)
            patient = self._patients.get(pkey)
            if patient is None:
                patient = self._patients[pkey] = PatientNode(
                    key=pkey, name=rec.patient_name, patient_id=rec.patient_id,
                    birth_date=rec.patient_birth_date, sex=rec.patient_sex)
            study_uid = rec.study_uid or f"nostudy:{os.path.dirname(rec.path)}"
            study = patient.studies.get(study_uid)
            if study is None:
                study = patient.studies[study_uid] = StudyNode(
                    uid=study_uid, date=rec.study_date, time=rec.study_time,
                    description=rec.study_description, accession_number=rec.accession_number)
            series_uid = rec.series_uid or f"noseries:{study_uid}"
            series = study.series.get(series_uid)
            if series is None:
                series = study.series[series_uid] = SeriesNode(
                    uid=series_uid, number=rec.series_number, description=rec.series_description,
                    modality=rec.modality, body_part=rec.body_part)
            series.instances.append(rec)
        return added

    def merge(self, other: StudyIndex) -> int:
        """Add every record of ``other``; returns how many were new."""
        return self.add(other.records())

    def records(self) -> list[InstanceRecord]:
        """All records, in insertion order."""
        return list(self._keys.values())

    def get(self, path: str, member: str | None = None) -> InstanceRecord | None:
        return self._keys.get((path, member))

    def patients(self) -> list[PatientNode]:
        """Patients sorted by name then ID."""
        return sorted(self._patients.values(), key=lambda p: (p.name.upper(), p.patient_id))

    def instances_for(self, node: Node) -> list[InstanceRecord]:
        """Every instance under ``node``, in display order."""
        if isinstance(node, SeriesNode):
            return node.sorted_instances()
        if isinstance(node, StudyNode):
            return [r for s in node.sorted_series() for r in s.sorted_instances()]
        return [r for st in node.sorted_studies() for s in st.sorted_series() for r in s.sorted_instances()]


@dataclass
class ScanResult:
    """Outcome of :func:`scan_paths`.

    ``problems`` lists files that cannot be shown; an image whose transfer syntax no installed
    decoder handles is both in the index (so the user sees it) and in ``problems`` (so they
    learn which decoder to install).
    """

    index: StudyIndex
    problems: list[LoadProblem]
    files_seen: int


# --------------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------------


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _scan_serial(files: list[str], cancel: CancelToken, progress: ProgressFn, done: int,
                 total: int) -> list[InstanceRecord | LoadProblem]:
    out: list[InstanceRecord | LoadProblem] = []
    step = max(1, total // 100)
    for i, path in enumerate(files, 1):
        cancel.raise_if_cancelled()
        out.extend(scan_files([path]))
        if i % step == 0 or i == len(files):
            progress(done + i, total)
    return out


def _scan_pool(files: list[str], workers: int, cancel: CancelToken, progress: ProgressFn,
               done: int, total: int, executor: Executor | None = None,
               ) -> list[InstanceRecord | LoadProblem]:
    """Fan chunks out to a process pool while this thread scans chunks too.

    At most 2 chunks per worker are in flight, so cancelling stops promptly. This thread takes
    a chunk whenever no pool result is ready, which also covers the pool's start-up (a spawned
    interpreter needs 0.2-3 s depending on load before it scans anything).
    """
    size = max(50, min(250, len(files) // (workers * 8) or 50))
    pending = _chunks(files, size)
    pending.reverse()
    out: list[InstanceRecord | LoadProblem] = []
    own = executor is None
    # spawn: safe from a GUI process with threads (fork would copy locks held by other threads).
    pool = executor or ProcessPoolExecutor(max_workers=workers,
                                           mp_context=multiprocessing.get_context("spawn"))
    in_flight: set[Future[list[InstanceRecord | LoadProblem]]] = set()
    try:
        while pending or in_flight:
            cancel.raise_if_cancelled()
            while pending and len(in_flight) < workers * 2:
                in_flight.add(pool.submit(scan_files, pending.pop()))
            finished = {f for f in in_flight if f.done()}
            if not finished and pending:
                chunk = scan_files(pending.pop())
                out.extend(chunk)
                done += len(chunk)
                progress(done, total)
                continue
            if not finished:
                finished, _ = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
            in_flight -= finished
            for fut in finished:
                chunk = fut.result()
                out.extend(chunk)
                done += len(chunk)
            if finished:
                progress(done, total)
    finally:
        for fut in in_flight:
            fut.cancel()
        if own:
            pool.shutdown(wait=not cancel.cancelled, cancel_futures=True)
    return out


def scan_paths(
    paths: Sequence[str],
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
) -> ScanResult:
    """Index folders (recursively), single files, DICOMDIRs, zip archives and PNG/JPEG files.

    Reads headers only. Call it from a worker thread; it checks ``cancel`` between files or
    chunks and raises :class:`~viewer.services.tasks.Cancelled` when cancelled.

    Parameters
    ----------
    paths
        What the user opened.
    cancel, progress
        Cancellation token and ``progress(done, total)`` callback (called from this thread).
    workers
        Worker processes for large folders (this thread scans too); default
        ``min(os.cpu_count(), 4)``; 1 = no pool.
    executor
        A long-lived process pool to use instead of starting one per call (saves the workers'
        start-up); it must run :func:`viewer.dicom.scan.scan_files` (any process executor does).
    """
    cancel = cancel or CancelToken()
    progress = progress or no_progress
    register_opened(list(paths))
    t0 = time.perf_counter()
    found = discover(paths, cancel)
    problems = list(found.problems)
    total = len(found.files) + len(found.zips)
    progress(0, total)
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 4)
    threshold = WARM_POOL_THRESHOLD if executor is not None else POOL_THRESHOLD
    if n_workers > 1 and len(found.files) >= threshold:
        results = _scan_pool(found.files, n_workers, cancel, progress, 0, total, executor)
    else:
        results = _scan_serial(found.files, cancel, progress, 0, total)
    files_seen = len(found.files)
    records = [r for r in results if isinstance(r, InstanceRecord)]
    problems.extend(r for r in results if isinstance(r, LoadProblem))
    done = len(found.files)
    for zpath in found.zips:
        cancel.raise_if_cancelled()
        zrecords, zproblems, seen = scan_zip(zpath, cancel)
        records.extend(zrecords)
        problems.extend(zproblems)
        files_seen += seen
        done += 1
        progress(done, total)
    # Non-image DICOM and DICOMDIRs found by folder walks are not the user's problem to see.
    problems = [p for p in problems if not p.reason.startswith("DICOMDIR")]
    for rec in records:
        issue = undecodable_problem(rec)
        if issue is not None:
            problems.append(issue)
    _log_scan(len(paths), files_seen, len(records), problems, time.perf_counter() - t0)
    return ScanResult(index=StudyIndex(records), problems=problems, files_seen=files_seen)


def _log_scan(n_paths: int, files_seen: int, n_records: int, problems: list[LoadProblem],
              seconds: float) -> None:
    """Support log: counts, time, and each problem as a category and a file token."""
    by_kind = Counter(problem_category(p.reason) for p in problems)
    log.info("scan: %d path(s), %d files, %d images, %d problems in %.2f s%s", n_paths, files_seen,
             n_records, len(problems), seconds,
             "".join(f"; {n} x {kind}" for kind, n in by_kind.most_common(12)))
    for p in problems[:500]:
        log.debug("scan problem: %s [%s]", file_token(p.path, p.member), problem_category(p.reason))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _read_bytes(record: InstanceRecord) -> bytes:
    if record.member is not None:
        return read_member(record.path, record.member)
    with open_regular(record.path) as fp:
        return fp.read()


def load_plain_image(data: bytes, source: str) -> Radiograph:
    """PNG/JPEG bytes -> Radiograph: MONOCHROME2 for grey (or colour with equal channels),
    RGB uint8 otherwise; 16-bit grey PNG keeps its 16 bits."""
    name = os.path.basename(source)
    kind = image_kind(data[:8])
    if kind is None:
        raise LoadError(f"{name}: not a PNG or JPEG file (unknown signature)")
    try:
        rows, cols, depth = image_size(data)
    except ValueError as exc:
        raise LoadError(f"{name}: unreadable {kind.upper()} header ({exception_words(exc)})") from exc
    # Refuse size claims before OpenCV allocates the image (PNG/JPEG bombs), sized with the
    # image's own samples (a 16-bit grey PNG was sized as three samples), and keep what the
    # decode and the display pipeline hold (about 8x the decoded bytes for RGB: 99 MP RGB took
    # 2.3 GB) within the memory ceiling.
    samples = image_samples(data)
    check_frame_size(name, rows, cols, samples, 16 if depth > 8 else 8)
    decoded = rows * cols * samples * (2 if depth > 8 else 1)
    if decoded > MAX_PLAIN_DECODED_BYTES:
        raise LoadError(f"{name}: {cols} x {rows} pixels x {samples} sample(s) would decode to "
                        f"{decoded / 1024**2:.0f} MiB, over the {MAX_PLAIN_DECODED_BYTES // 1024**2} "
                        f"MiB limit for PNG/JPEG images; not decoded",
                        advice="export the image at a lower resolution, or as DICOM")
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise LoadError(f"{name}: {kind.upper()} decoding failed ({exception_words(exc)})") from exc
    if arr is None:
        raise LoadError(f"{name}: damaged or truncated {kind.upper()} data ({rows} x {cols} "
                        "declared)")
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        b, g, r = arr[:, :, 0], arr[:, :, 1], arr[:, :, 2]
        if np.array_equal(b, g) and np.array_equal(g, r):
            arr = np.ascontiguousarray(b)
        else:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
            if arr.dtype != np.uint8:
                arr = (np.asarray(arr, np.uint16) >> 8).astype(np.uint8)
            return Radiograph(pixels=arr, photometric="RGB", bits_stored=8, source=source)
    bits = 16 if arr.dtype == np.uint16 else 8
    # An 8-bit PNG/JPEG was windowed when it was made: it opens at its full range (as stored,
    # which is also what the models are given), not with an auto window that clips the
    # brightest 0.5 % (issue 16). 16-bit images keep the automatic window first.
    vois = (VOI("Full range (as stored in the image)", center=127.5, width=255.0,
                function="LINEAR_EXACT"),) if bits == 8 else ()
    return Radiograph(pixels=np.ascontiguousarray(arr), photometric="MONOCHROME2", bits_stored=bits,
                      source=source, vois=vois)


def load_image(record: InstanceRecord, frame: int = 0, *, reduce_to: int | None = None) -> Radiograph:
    """Decode one frame of a record (DICOM file, zip member, PNG or JPEG).

    ``reduce_to`` lets JPEG 2000 / JPEG Baseline DICOM decode at reduced resolution (long side
    >= ``2 * reduce_to``), for thumbnails.

    Raises
    ------
    LoadError
        With a user-facing message (and, for DICOM, the transfer syntax and decoder advice).
    """
    try:
        return _load_image(record, frame, reduce_to)
    except Exception as exc:
        log_file_error(log, "decode", record.path, exc, member=record.member)
        raise


def _load_image(record: InstanceRecord, frame: int, reduce_to: int | None) -> Radiograph:
    if record.kind == "dicom":
        return load_radiograph(record, frame, reduce_to=reduce_to)
    source = record.source
    try:
        data = _read_bytes(record)
    except OSError as exc:
        raise LoadError(f"cannot read {record.display_name}: {exception_words(exc)}") from exc
    return load_plain_image(data, source)
