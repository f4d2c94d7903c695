"""Headless batch analysis: ``radview analyze PATH... [options]`` (never imports Qt).

Writes one row per image x model (CSV or JSON; CSV on stdout without ``--out``), each declared
segment's mask and the heatmap views as PNG, one DICOM SEG per DICOM image, and progress to
stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from viewer import RESEARCH_NOTICE, __version__

if TYPE_CHECKING:
    from viewer.dicom.scan import InstanceRecord
    from viewer.services.analysis import AnalysisService
    from viewer.services.analysis_types import AnalysisInput, AnalysisResult, ModelResult

__all__ = ["analyze_main", "build_parser"]

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_OUTPUT = 0, 1, 2, 3
_DICOMDIR_FAILURES = ("file listed in DICOMDIR is missing", "a DICOMDIR record", "unreadable DICOMDIR",
                      "the DICOMDIR lists no files", "entry listed in DICOMDIR")

_EPILOG = f"""\
output columns: file, image_id, model_id, model_version, status (ok | out_of_scope |
outside_data: the model's own check says the image is unlike its training data, or the study
date is before its population; no finding | error),
reason, label, confidence, band (green/orange/red), threshold, positive_label,
positive_probability, probabilities (JSON object of every class or finding), forced, caution
(set when the patient's age in the DICOM header is outside the model's population), findings
(JSON: a multi-label model's findings, each with probability, threshold, call and band),
measurements (JSON: the manifests' declared measurements by key <model>.<kind>[.<segment or
role>], e.g. covid.heatmap_share.lung_field), notice.

exit status: 0 every image was analysed (out_of_scope and outside_data count as analysed); 1 at least one file
could not be read or a model failed on it (rows with status "error" say why), or a DICOMDIR
lists files that are missing or cannot be used (the "skipped" lines say which); 2 usage error
(bad option, no input found, unknown model id, an output inside an input folder or the
folder of an input file: results never go into a study folder); 3 an output could not be
written (disk full, read-only folder): no partial file is left under the output's name.

{RESEARCH_NOTICE}
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="radview analyze", description="Analyse radiographs with the on-device models.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="DICOM/PNG/JPEG files, folders, zips")
    p.add_argument("--models", help="comma-separated model ids to run (default: all)")
    p.add_argument("--out", type=Path, help="write results to FILE.csv or FILE.json (default: CSV on stdout)")
    p.add_argument("--masks", type=Path, metavar="DIR",
                   help="write each segmenter's masks as <stem>_<model>.png, or "
                        "<stem>_<model>_<segment>.png for a model of several segments (0/255, input size)")
    p.add_argument("--heatmaps", type=Path, metavar="DIR",
                   help="write Grad-CAM++ views as <stem>_<model>.png (a multi-label model: "
                        "<stem>_<model>_<finding>.png per positive finding)")
    p.add_argument("--seg", type=Path, metavar="DIR",
                   help="write one DICOM Segmentation per DICOM image as <stem>_seg.dcm, one "
                        "segment per declared segment that has codes in its manifest")
    p.add_argument("--force", action="store_true", help="run models even outside their intended input or data (results marked forced)")
    p.add_argument("--models-dir", type=Path, action="append", default=[], metavar="DIR",
                   help="extra models folder, searched before the user models folder "
                        "(radview models list shows it) and the bundled models (repeatable)")
    p.add_argument("--workers", type=int, default=2, help="images analysed in parallel (default 2)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads per run (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    g = p.add_argument_group(
        "archive scale (docs/SCALING.md)",
        "--out DIR.parquet writes a Parquet dataset, one part per chunk of files; a rerun with "
        "the same --out skips the files already in it. --scheduler/--local-cluster run the "
        "chunks on Dask workers (pip install 'radview[cluster]'; the network is then allowed "
        "for Dask), which read the inputs and write --out on storage shared with this machine.")
    g.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:8786")
    g.add_argument("--local-cluster", type=int, metavar="N", help="start a Dask LocalCluster of N worker processes")
    g.add_argument("--path-map", action="append", default=[], metavar="CLIENT=WORKER",
                   help="a path prefix as the workers see it, e.g. /mnt/a=/data/a (repeatable)")
    g.add_argument("--chunk-size", type=int, metavar="N", help="files per task (default: from the file count)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also write the support log to stderr (radview --log-path says where it is)")
    p.add_argument("--version", action="version", version=f"radview {__version__}")
    return p


def _error_reason(exc: BaseException) -> str:
    """An image's error row: our own message for a LoadError (built from categories, e.g.
    "x.dcm: cannot decode JPEG 2000"), else a category; never a library's exception text."""
    from viewer.core.messages import exception_words

    if type(exc).__name__ == "LoadError":
        return str(exc)  # message and advice, both ours
    return exception_words(exc)


class _OverlayWriter:
    """Writes masks, heatmap views and DICOM SEGs on the worker threads; unique stems."""

    def __init__(self, masks: Path | None, heatmaps: Path | None, seg: Path | None = None,
                 service: AnalysisService | None = None,
                 records: Mapping[str, InstanceRecord] | None = None) -> None:
        self.masks, self.heatmaps, self.seg = masks, heatmaps, seg
        self.service = service  # AnalysisService: its manifests and heatmap_for
        self.records = records or {}  # source -> InstanceRecord (the DICOM source of a SEG)
        self.notes: set[str] = set()
        self._lock = threading.Lock()
        self._used: set[str] = set()

    def _stem(self, stem: str) -> str:
        with self._lock:
            name, n = stem, 1
            while name in self._used:
                n += 1
                name = f"{stem}-{n}"
            self._used.add(name)
        return name

    def __call__(self, inp: AnalysisInput, result: AnalysisResult) -> None:
        from viewer.services.declared_exports import (
            heatmap_file_name, heatmap_picture, mask_file_name,
        )
        from viewer.services.export import atomic_write_bytes

        record = self.records.get(inp.source)  # the file's own name, never a parsed source text
        name = (record.member or record.path) if record is not None else inp.source
        stem = self._stem(Path(name).stem or inp.image_id)
        grey = None
        for r in result.results:
            if self.masks is not None:
                for o in r.overlays_of("mask"):
                    _write_png(self.masks / mask_file_name(stem, r, o.label),
                               (o.array > 0).astype(np.uint8) * 255, atomic_write_bytes)
            if self.heatmaps is not None:
                for label, heat in self._heatmaps(r, result.image_shape):
                    if grey is None:
                        grey = inp.display if inp.display.ndim == 2 else cv2.cvtColor(
                            inp.display, cv2.COLOR_RGB2GRAY)
                    view = heatmap_picture(grey, heat)  # the window's blend and notice
                    _write_png(self.heatmaps / heatmap_file_name(stem, r, label),
                               cv2.cvtColor(view, cv2.COLOR_RGB2BGR), atomic_write_bytes)
        if self.seg is not None:
            self._write_seg(inp, result, stem)

    def _heatmaps(self, r: ModelResult, shape: tuple[int, int]
                  ) -> list[tuple[str, np.ndarray]]:
        """The reported map; for a multi-label model every positive finding's map."""
        maps = [(o.label, o.array) for o in r.overlays_of("heatmap")]
        if r.multilabel and maps and self.service is not None and r.cams is not None:
            done = {label for label, _ in maps}
            maps += [(f.label, self.service.heatmap_for(r, f.label, shape))
                     for f in r.findings if f.positive and f.label not in done]
        return maps

    def _write_seg(self, inp: AnalysisInput, result: AnalysisResult, stem: str) -> None:
        from viewer.dicom.export import DicomExportError, write_segmentation
        from viewer.dicom.load import read_dataset
        from viewer.services.declared_exports import segment_specs

        record = self.records.get(inp.source)
        if record is None or getattr(record, "kind", "dicom") != "dicom":
            return  # a PNG/JPEG has no DICOM source to reference
        manifests = {m.id: m for m in self.service.registry.available()} if self.service else {}
        specs, notes = segment_specs(result, manifests)
        with self._lock:
            self.notes.update(notes)
        if specs and self.seg is not None:
            try:
                write_segmentation(read_dataset(record.path, record.member), specs,
                                   self.seg / f"{stem}_seg.dcm")
            except DicomExportError as exc:  # e.g. a source that cannot be referenced
                with self._lock:
                    self.notes.add(f"{stem}: no DICOM SEG written: {exc}")


def _write_png(path: Path, img: np.ndarray, atomic) -> None:  # type: ignore[no-untyped-def]
    # Level 1: radiographs barely compress better at higher levels but take 2-4x longer.
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"cannot encode {path.name}")
    atomic(path, lambda fh: fh.write(buf.tobytes()))


def analyze_main(argv: Sequence[str]) -> int:
    """Entry point of ``radview analyze``; returns the exit status (see ``--help``)."""
    from viewer.services.export import ExportError

    try:
        return _analyze_main(argv)
    except ExportError as exc:  # disk full, read-only output folder (message for the user)
        print(f"radview analyze: {exc}", file=sys.stderr)
        return EXIT_OUTPUT
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"radview analyze: cannot write output{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_OUTPUT


def _analyze_main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    from viewer.inference.registry import ModelRegistry
    from viewer.inference.sessions import SessionPool
    from viewer.services.analysis import AnalysisService
    from viewer.services.analysis_inputs import input_from_record
    from viewer.services.decode_pool import DecodePool
    from viewer.services.export import (
        CsvResultWriter, ExportError, check_destination, csv_row, result_rows,
    )
    from viewer.services.library import scan_paths
    from viewer.services.support_log import setup_support_log

    setup_support_log("analyze", verbose=args.verbose)
    log = logging.getLogger("radview")
    t_start = time.perf_counter()

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    from viewer.services.ai_session import model_folders

    # The user models folder (where `radview models add` writes) comes after --models-dir,
    # as in the window (one list: services.ai_session.model_folders).
    registry = ModelRegistry.default(model_folders(args.models_dir))
    for entry in registry.unavailable():
        say(f"model {entry.id} unavailable: {entry.reason}")
    wanted = None
    if args.models:
        wanted = {m.strip() for m in args.models.split(",") if m.strip()}
        unknown = sorted(wanted - {m.id for m in registry.available()})
        if unknown:
            print(f"radview analyze: unknown or unavailable model(s): {', '.join(unknown)}", file=sys.stderr)
            return EXIT_USAGE
    if not registry.available():
        print("radview analyze: no usable model found", file=sys.stderr)
        return EXIT_USAGE
    from viewer.services.cluster_cli import analyze_dataset, wants_dataset

    if wants_dataset(args):  # a Parquet dataset, here or on Dask (services/batch.py)
        return analyze_dataset(args, say)
    inputs = [Path(p) for p in args.paths]
    try:
        for dest in (args.out, args.masks, args.heatmaps, args.seg):
            if dest is not None:
                check_destination(dest, [p if p.is_dir() else p.parent for p in inputs])
    except ExportError as exc:
        print(f"radview analyze: {exc}", file=sys.stderr)
        return EXIT_USAGE
    scan = scan_paths([str(p) for p in inputs], workers=1)
    records = [r for r in scan.index.records() if r.is_image]
    rows_total = 0
    errors = 0
    for problem in scan.problems:
        say(f"skipped {problem.path}: {problem.reason}")
    # A DICOMDIR that lists files which cannot be read means images were missed: not a clean
    # run (a self-referencing or broken DICOMDIR used to exit 0 silently).
    errors += sum(1 for p in scan.problems if p.reason.startswith(_DICOMDIR_FAILURES))
    if not records:
        print("radview analyze: no images found", file=sys.stderr)
        return EXIT_USAGE
    for folder in (args.masks, args.heatmaps, args.seg):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    say(f"{len(records)} image(s), models: {', '.join(m.id for m in registry.available())}")
    log.info("analyze: %d image(s), %d problem(s), models %s, %d worker(s) x %d thread(s)",
             len(records), len(scan.problems), ",".join(m.id for m in registry.available()),
             args.workers, args.threads)
    service = AnalysisService(registry, SessionPool(args.threads))
    # Compressed DICOM is decoded in worker processes: a decoder's native abort (a hostile
    # codestream) becomes that file's error row, and the batch goes on (issue 15).
    decoders = DecodePool(workers=max(1, args.workers))
    load = partial(input_from_record, load=decoders.load_image)
    writer = _OverlayWriter(args.masks, args.heatmaps, args.seg, service,
                            {r.source: r for r in records})
    as_json = args.out is not None and args.out.suffix.lower() == ".json"
    json_rows: list[dict[str, object]] = []
    csv_out = None if as_json else (CsvResultWriter(args.out) if args.out else None)
    stdout_csv = None
    if args.out is None:
        import csv

        from viewer.services.export import CSV_FIELDS
        stdout_csv = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore")
        stdout_csv.writeheader()
    progress_step = max(1, len(records) // 20)

    def progress(done: int, total: int) -> None:
        if done % progress_step == 0 or done == total:
            say(f"[{done}/{total}]")

    seen_messages: set[str] = set()
    overlays = args.masks is not None or args.heatmaps is not None or args.seg is not None
    try:
        with ThreadPoolExecutor(max(1, args.workers), thread_name_prefix="analyze") as pool:
            for record, value in service.iter_batch(
                    records, load, pool, progress=progress,
                    in_flight=2 * max(1, args.workers), keep_arrays=False,
                    on_analysed=writer if overlays else None, models=wanted, force=args.force,
                    heatmaps=args.heatmaps is not None):
                source = record.source
                if isinstance(value, ExportError):
                    raise value  # an output cannot be written: stop, not one error row per image
                if isinstance(value, BaseException):
                    errors += 1
                    rows: list[dict[str, object]] = [{"file": source, "image_id": record.sop_instance_uid, "model_id": "",
                             "model_version": "", "status": "error",
                             "reason": _error_reason(value), "probabilities": {},
                             "notice": RESEARCH_NOTICE}]
                else:
                    rows = result_rows(value)
                    errors += any(r["status"] == "error" for r in rows)
                    for msg in set(value.messages) - seen_messages:
                        seen_messages.add(msg)
                        say(msg)
                for row in rows:
                    rows_total += 1
                    if as_json:
                        json_rows.append(row)
                    elif csv_out is not None:
                        csv_out.write_row(row)
                    elif stdout_csv is not None:
                        stdout_csv.writerow(csv_row(row))
    except BaseException:
        if csv_out is not None:
            csv_out.close(commit=False)
        raise
    finally:
        decoders.shutdown()
    if csv_out is not None:
        csv_out.close()
    if as_json:
        from viewer.services.export import provenance, write_json
        write_json(json_rows, args.out, source=provenance(registry.available()))
    for note in sorted(writer.notes):
        say(note)
    say(f"{rows_total} row(s), {errors} image(s) with errors" + (f" -> {args.out}" if args.out else ""))
    seconds = time.perf_counter() - t_start
    log.info("analyze done: %d image(s), %d row(s), %d with errors in %.1f s (%.2f images/s)",
             len(records), rows_total, errors, seconds, len(records) / max(seconds, 1e-9))
    return EXIT_ERRORS if errors else EXIT_OK
