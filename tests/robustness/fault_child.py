"""Child processes for the SIGKILL tests: write history entries or exports in a loop and report
each one only AFTER the call that commits it has returned.

Reports are appended to a text file, one ``os.write`` per line; a line without its newline was
cut by the kill and is ignored by the parent.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from viewer.services.analysis_types import AnalysisResult, ModelResult, Overlay

N_MODELS = 3


def sample_result(i: int, size: int = 48) -> AnalysisResult:
    """A small but complete result: classifier with heatmap, segmenter with mask."""
    rng = np.random.default_rng(i)
    mask = (rng.random((size, size)) > 0.5).astype(np.uint8)
    heat = rng.random((size, size), dtype=np.float32)
    results = tuple(
        ModelResult(model_id=f"model{k}", model_version="1.0.0", task="classification",
                    status="ok", label="a", probabilities={"a": 0.75, "b": 0.25}, confidence=0.75,
                    band="orange", threshold=0.5, positive_label="a",
                    overlays=((Overlay("mask", f"model{k}", "a", mask, "region"),) if k == 0 else
                              (Overlay("heatmap", f"model{k}", "a", heat),) if k == 1 else ()))
        for k in range(N_MODELS))
    return AnalysisResult(image_id=f"1.2.826.0.1.3680043.10.1.{i}", source=f"/studies/x{i}.dcm",
                          image_shape=(size, size), gate=None, results=results)


def _report(report: Path, line: str) -> None:
    fd = os.open(report, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def history_writer(db: str, report: str, start: int) -> None:
    """Record results forever; report ``H <entry ids>`` after each ``record`` returns."""
    from viewer.services.history import HistoryStore

    store = HistoryStore(Path(db))
    if store.messages:
        _report(Path(report), "M " + " | ".join(store.messages))
    i = start
    while True:
        run = store.new_run(f"kill test {i}")
        ids = store.record(run, sample_result(i))
        _report(Path(report), "H " + ",".join(map(str, ids)))
        i += 1


def export_writer(out: str, report: str, start: int, source_dcm: str) -> None:
    """Write CSV, JSON, PNG, DICOM SEG and SC exports forever; report each after it returns."""
    import pydicom

    from viewer.dicom.export import write_heatmap_capture, write_lung_segmentation
    from viewer.services.export import result_rows, write_csv, write_json, write_png

    folder = Path(out)
    source = pydicom.dcmread(source_dcm)
    i = start
    while True:
        result = sample_result(i)
        rows = result_rows(result) * 40  # big enough that a write takes a while
        kind = i % 5
        if kind == 0:
            path = write_csv(rows, folder / f"r{i}.csv")
        elif kind == 1:
            path = write_json(rows, folder / f"r{i}.json")
        elif kind == 2:
            rgb = np.random.default_rng(i).integers(0, 256, (400, 500, 3), dtype=np.uint8)
            path = write_png(rgb, folder / f"r{i}.png")
        elif kind == 3:
            mask = np.zeros((int(source.Rows), int(source.Columns)), np.uint8)
            mask[4:20, 4:30] = 1
            path = write_lung_segmentation(source, mask, folder / f"r{i}_seg.dcm",
                                           algorithm_name="lungs", algorithm_version="1.0.0")
        else:
            rgb = np.zeros((int(source.Rows), int(source.Columns), 3), np.uint8)
            path = write_heatmap_capture(source, rgb, folder / f"r{i}_sc.dcm", description="test")
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        _report(Path(report), f"E {Path(path).name} {digest}")
        i += 1
