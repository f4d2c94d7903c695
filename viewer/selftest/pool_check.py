"""Self-test, process part: a spawn-context worker process can start and decode a file.

The viewer decodes JPEG 2000 / JPEG-LS and scans large folders in spawn-context process pools. In
a frozen program a spawned worker re-launches the executable itself, which works only if the
entry script calls ``multiprocessing.freeze_support()`` first (build/radview_main.py does) and
the worker can import the decoders from the bundle. This runs one real decode in such a worker.
"""

from __future__ import annotations

from viewer.core.messages import exception_words

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from viewer.selftest.report import Report

__all__ = ["check_process_pool", "decode_in_worker"]

TIMEOUT_S = 120.0


def decode_in_worker(path: str) -> tuple[int, tuple[int, ...]]:
    """Runs in the worker: decode ``path`` with the viewer's loader; (worker pid, pixel shape)."""
    from viewer.dicom.load import load_radiograph

    return os.getpid(), tuple(load_radiograph(path).pixels.shape)


def check_process_pool(report: Report, path: Path | None) -> None:
    if path is None:
        report.add("process", "spawn worker", "skip", "no decodable file to hand to a worker")
        return
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        pid, shape = pool.submit(decode_in_worker, str(path)).result(timeout=TIMEOUT_S)
    except Exception as exc:
        pool.shutdown(wait=False, cancel_futures=True)
        report.add("process", "spawn worker", "fail", exception_words(exc)[:300], time.perf_counter() - t0)
        return
    pool.shutdown(wait=True)
    status = "ok" if pid != os.getpid() and len(shape) >= 2 else "fail"
    report.add("process", "spawn worker", status, f"decoded {path.name} {shape} in process {pid}",
               time.perf_counter() - t0)
