"""Header-scan throughput: 10,000 generated small DICOM files, warm page cache.

Target (issue 2): at least 2,500 files/s on this 2-core machine.
Run: ``python -m bench.scan [--files N] [--workers W]``.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import Result, report
from bench.synth import make_dataset
from viewer.dicom.scan import scan_files
from viewer.services import library
from viewer.services.library import scan_paths
from viewer.services.tasks import CancelToken

TARGET_FILES_PER_S = 2500.0


_UID_SLOT = "1.2.826.0.1.3680043.10.3.999999999"  # replaced per file by a same-length UID
_INSTANCE_SLOT = "999999"


def generate(root: Path, count: int) -> None:
    """``count`` small CR files: 50 patients x 2 studies x 2 series, 16x16 pixels, in folders.

    One Part 10 byte template per series; each file gets its own SOP Instance UID and Instance
    Number by replacing same-length placeholders (pydicom would take ~5 ms a file under load).
    """
    px = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 16)
    templates: dict[tuple[int, int, int], bytes] = {}
    for i in range(count):
        patient, study, series = i % 50, (i // 50) % 2, (i // 100) % 2
        key = (patient, study, series)
        if key not in templates:
            ds = make_dataset(px, patient=patient, study=study, series=series,
                              study_uid=f"1.2.826.0.1.3680043.10.2.{patient}.{study}",
                              series_uid=f"1.2.826.0.1.3680043.10.2.{patient}.{study}.{series}")
            ds.SOPInstanceUID = _UID_SLOT
            ds.file_meta.MediaStorageSOPInstanceUID = _UID_SLOT
            ds.InstanceNumber = _INSTANCE_SLOT
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            templates[key] = buf.getvalue()
        folder = root / f"P{patient:03d}" / f"S{study}" / f"SE{series}"
        folder.mkdir(parents=True, exist_ok=True)
        uid = f"{_UID_SLOT[:-9]}{100_000_000 + i}"  # same length, no leading zero (valid UI)
        data = templates[key].replace(_UID_SLOT.encode(), uid.encode())
        data = data.replace(_INSTANCE_SLOT.encode(), f"{i:06d}".encode())
        (folder / f"IM{i:06d}.dcm").write_bytes(data)


def _rate(root: Path, files: int, repeat: int, **kw: object) -> float:
    """Best files/s of ``repeat`` scans (each checked for completeness)."""
    rates = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = scan_paths([str(root)], cancel=CancelToken(), **kw)  # type: ignore[arg-type]
        dt = time.perf_counter() - t0
        assert len(result.index) == files, (len(result.index), result.problems[:3])
        assert len(result.index.patients()) == 50
        rates.append(files / dt)
    return max(rates)


def run(files: int = 10_000, workers: int | None = None, repeat: int = 3) -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="radview-bench-scan-"))
    try:
        t0 = time.perf_counter()
        generate(root, files)
        print(f"generated {files} files in {time.perf_counter() - t0:.1f} s under {root}")
        scan_paths([str(root)], cancel=CancelToken(), workers=1)  # warm the page cache
        default = _rate(root, files, repeat, workers=workers)
        serial = _rate(root, files, repeat, workers=1)
        n_workers = workers or min(os.cpu_count() or 1, 4)
        threshold = library.POOL_THRESHOLD
        try:
            library.POOL_THRESHOLD = 0
            cold_pool = _rate(root, files, 1, workers=n_workers)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
                list(pool.map(scan_files, [[]] * n_workers))  # start the workers first
                warm_pool = _rate(root, files, repeat, workers=n_workers, executor=pool)
        finally:
            library.POOL_THRESHOLD = threshold
        return report("bench.scan", [
            Result(f"header scan, {files} files, default settings", default, "files/s",
                   TARGET_FILES_PER_S, higher_is_better=True),
            # Alternatives, for comparison (the default picks among them by folder size):
            Result("  one thread (workers=1)", serial, "files/s", None),
            Result(f"  process pool started per scan ({n_workers} workers)", cold_pool, "files/s", None),
            Result(f"  long-lived process pool ({n_workers} workers)", warm_pool, "files/s", None),
        ])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    run(args.files, args.workers, args.repeat)


if __name__ == "__main__":
    main()
