"""SIGKILL at random moments while history entries and exports are being written.

A child process (forked from a forkserver that has the modules imported, so a start costs a few
milliseconds) writes in a loop and reports each entry or file only after the call that commits
it returned; the test kills it after a random delay, 200 times in all, and checks after every
kill that

- the history database reopens without being moved aside and holds every reported entry;
- every export with its final name is complete (parses, right size, and matches the reported
  digest when it was reported); interrupted writes leave at most a hidden ``.*.part`` file.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from tests import dicom_factory
from tests.robustness import fault_child

KILLS_HISTORY = 100
KILLS_EXPORT = 100
ROWS_PER_EXPORT = fault_child.N_MODELS * 40


@pytest.fixture(scope="module")
def ctx() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.robustness.fault_child", "viewer.services.history",
                                    "viewer.services.export", "viewer.dicom.export"])
    return context


def _kill_after(ctx: multiprocessing.context.BaseContext, target: object, args: tuple[object, ...],
                delay: float) -> None:
    proc = ctx.Process(target=target, args=args, daemon=True)  # type: ignore[attr-defined]
    proc.start()
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL, proc.exitcode


def _reported(report: Path) -> list[str]:
    if not report.exists():
        return []
    text = report.read_text()
    lines = text.split("\n")
    return [ln for ln in lines[:-1] if ln]  # the last piece has no newline: cut by the kill


@pytest.mark.slow
def test_history_survives_sigkill(tmp_path: Path, ctx: multiprocessing.context.BaseContext) -> None:
    from viewer.services.history import HistoryStore

    db = tmp_path / "history.sqlite"
    rng = np.random.default_rng(1)
    committed: set[int] = set()
    start = time.perf_counter()
    for k in range(KILLS_HISTORY):
        report = tmp_path / f"h{k}.txt"
        _kill_after(ctx, fault_child.history_writer, (str(db), str(report), k * 10_000),
                    float(rng.uniform(0.01, 0.15)))
        lines = _reported(report)
        assert not [ln for ln in lines if ln.startswith("M ")], lines  # never moved aside
        for ln in lines:
            committed.update(int(x) for x in ln[2:].split(","))
        with HistoryStore(db) as store:
            assert store.messages == []
            assert store.count() >= len(committed)
        conn = sqlite3.connect(db)
        try:
            ids = {row[0] for row in conn.execute("SELECT id FROM entries")}
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            # No partial result: every run has all of its models or none.
            partial = conn.execute("SELECT run_id, COUNT(*) FROM entries GROUP BY run_id "
                                   "HAVING COUNT(*) != ?", (fault_child.N_MODELS,)).fetchall()
        finally:
            conn.close()
        assert committed <= ids, sorted(committed - ids)[:10]
        assert partial == []
    elapsed = time.perf_counter() - start
    assert len(committed) > KILLS_HISTORY  # the kills did land mid-loop, after some commits
    print(json.dumps({"kills": KILLS_HISTORY, "committed_entries": len(committed),
                      "seconds": round(elapsed, 1)}))


def _complete(path: Path) -> None:
    """Raise unless ``path`` is a complete export of its kind."""
    if path.suffix == ".csv":
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n") and text.count("\n") >= ROWS_PER_EXPORT + 1, path
    elif path.suffix == ".json":
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert len(doc["results"]) == ROWS_PER_EXPORT and doc["notice"]
    elif path.suffix == ".png":
        img = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
        # 400 x 500 as rendered, plus the research-notice strip added under it
        assert img is not None and img.shape[1:] == (500, 3) and img.shape[0] > 400, path
    else:
        ds = pydicom.dcmread(path)
        assert ds.pixel_array.size > 0


@pytest.mark.slow
def test_exports_complete_or_absent_after_sigkill(tmp_path: Path,
                                                  ctx: multiprocessing.context.BaseContext) -> None:
    src = dicom_factory.write_dicom(tmp_path / "src.dcm",
                                    np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) % 4096,
                                    bits_stored=12, PixelSpacing=[0.2, 0.2])
    out = tmp_path / "exports"
    out.mkdir()
    rng = np.random.default_rng(2)
    digests: dict[str, str] = {}
    start = time.perf_counter()
    for k in range(KILLS_EXPORT):
        report = tmp_path / f"e{k}.txt"
        _kill_after(ctx, fault_child.export_writer, (str(out), str(report), k * 10_000, str(src)),
                    float(rng.uniform(0.02, 0.4)))
        for ln in _reported(report):
            _, name, digest = ln.split(" ")
            digests[name] = digest
    elapsed = time.perf_counter() - start
    finals = [p for p in out.iterdir() if not p.name.startswith(".")]
    leftovers = [p for p in out.iterdir() if p.name.startswith(".")]
    assert all(p.name.endswith(".part") for p in leftovers), leftovers
    for path in finals:
        _complete(path)
        if path.name in digests:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[path.name], path
    assert set(digests) <= {p.name for p in finals}
    assert len(digests) >= 20  # enough exports finished between kills to mean something
    print(json.dumps({"kills": KILLS_EXPORT, "complete_exports": len(finals),
                      "reported": len(digests), "part_leftovers": len(leftovers),
                      "seconds": round(elapsed, 1)}))
