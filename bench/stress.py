"""Stress: a folder of 20,000 files, 5 % corrupt and 5 % not DICOM, scanned to completion.

Checks, not just times: every corrupt or non-DICOM file must appear in the scan's problems
(the Load Report) and no good file may; the index must hold every good file. With ``--gui``
the same folder is opened in a real window while ``bench.gui_probe.GapProbe`` measures how long
the GUI thread is ever blocked, and the Load Report's row count is compared.

Corrupt files are damaged so that they cannot be shown: cut inside the header before
(0028,0010) Rows, zero length, or a valid preamble followed by garbage. Non-DICOM files are
text, random bytes and a PDF header, with and without a ``.dcm`` name.

Run: ``python -m bench.stress [--files 20000] [--gui [--explain]] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.scan import generate

__all__ = ["generate_mixed", "scan_check", "main"]


def _corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    rows_at = data.find(b"\x28\x00\x10\x00", 132)
    kind = int(rng.integers(3))
    if kind == 0:
        return data[: int(rng.integers(1, max(rows_at, 2)))]  # cut before Rows
    if kind == 1:
        return b""
    return data[:132] + rng.bytes(int(rng.integers(16, 2000)))


def _non_dicom(rng: np.random.Generator) -> tuple[str, bytes]:
    kind = int(rng.integers(4))
    if kind == 0:
        return ".dcm", b"Report for study, see attached.\n" * int(rng.integers(1, 50))
    if kind == 1:
        return "", rng.bytes(int(rng.integers(1, 4000)))
    if kind == 2:
        return ".dcm", b"%PDF-1.4\n" + rng.bytes(int(rng.integers(10, 3000)))
    return ".img", bytes(int(rng.integers(200, 3000)))


def generate_mixed(root: Path, files: int, *, corrupt: float = 0.05, non_dicom: float = 0.05,
                   seed: int = 5) -> dict[str, list[str]]:
    """Write ``files`` files under ``root``; returns the paths by kind ("good", "corrupt",
    "non_dicom"). Bad files sit in the same folders as good ones, in random order."""
    rng = np.random.default_rng(seed)
    n_corrupt, n_other = int(files * corrupt), int(files * non_dicom)
    n_good = files - n_corrupt - n_other
    generate(root, n_good)
    good = sorted(str(p) for p in root.rglob("*.dcm"))
    folders = sorted({os.path.dirname(p) for p in good})
    out: dict[str, list[str]] = {"good": good, "corrupt": [], "non_dicom": []}
    for i in range(n_corrupt):
        src = good[int(rng.integers(len(good)))]
        path = Path(folders[int(rng.integers(len(folders)))]) / f"BAD{i:05d}.dcm"
        path.write_bytes(_corrupt(Path(src).read_bytes(), rng))
        out["corrupt"].append(str(path))
    for i in range(n_other):
        ext, data = _non_dicom(rng)
        path = Path(folders[int(rng.integers(len(folders)))]) / f"OTHER{i:05d}{ext}"
        path.write_bytes(data)
        out["non_dicom"].append(str(path))
    return out


def scan_check(root: Path, kinds: dict[str, list[str]], **scan_kw: Any) -> dict[str, Any]:
    """Scan ``root`` headless and check the report against the known kinds."""
    from viewer.services.library import scan_paths

    start = time.perf_counter()
    result = scan_paths([str(root)], **scan_kw)
    seconds = time.perf_counter() - start
    reported = {p.path for p in result.problems}
    bad = set(kinds["corrupt"]) | set(kinds["non_dicom"])
    indexed = {r.path for r in result.index.records()}
    return {
        "files": result.files_seen, "seconds": round(seconds, 2),
        "files_per_s": round(result.files_seen / max(seconds, 1e-9)),
        "indexed": len(indexed), "problems": len(result.problems),
        "bad_unreported": len(bad - reported), "good_reported": len(reported - bad),
        "good_missing": len(set(kinds["good"]) - indexed),
        "ok": bad <= reported and not (reported - bad) and set(kinds["good"]) <= indexed,
    }


def gui_check(root: Path, kinds: dict[str, list[str]], explain: bool = False) -> dict[str, Any]:
    """Open ``root`` in a window; GUI-thread gaps while scanning and the Load Report's rows.

    ``explain``: print what each gap over 30 ms was made of (``bench.gui_probe.ExplainingProbe``).
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from bench.gui_probe import ExplainingProbe, GapProbe, probe_idle, probe_scan
    from viewer.app import build_window
    from viewer.ui.settings import AppSettings

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory(prefix="radview-stress-gui-") as tmp:
        settings = AppSettings(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        window = build_window(settings, Path(tmp) / "cache")
        window.resize(1400, 900)
        window.show()
        app.processEvents()
        probe = ExplainingProbe() if explain else GapProbe()
        try:
            idle = probe_idle(probe, 1.0)
            stats = probe_scan(window, root, probe)
            report = window.load_report
            deadline = time.perf_counter() + 30
            while getattr(report, "pending", lambda: 0)() and time.perf_counter() < deadline:
                app.processEvents()  # rows beyond the first chunk follow on later loop turns
            app.processEvents()
            stats["load_report_rows"] = report.table.rowCount()
            stats["idle_max_ms"] = idle["max_ms"]
        finally:
            window.shutdown()
            window.close()
            if explain:
                print("\n".join(probe.events))  # type: ignore[attr-defined]
    stats["expected_report_rows"] = len(kinds["corrupt"]) + len(kinds["non_dicom"])
    return stats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--gui", action="store_true", help="also open the folder in a window")
    parser.add_argument("--workers", type=int, default=None, help="scan worker processes")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--explain", action="store_true",
                        help="with --gui: what each GUI-thread gap over 30 ms was made of")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="radview-stress-") as tmp:
        root = Path(tmp) / "folder"
        t0 = time.perf_counter()
        kinds = generate_mixed(root, args.files)
        results["generate_s"] = round(time.perf_counter() - t0, 1)
        results["kinds"] = {k: len(v) for k, v in kinds.items()}
        print("generated:", json.dumps(results["kinds"]), f"in {results['generate_s']} s", flush=True)
        results["scan"] = scan_check(root, kinds, workers=args.workers)
        print("headless scan:", json.dumps(results["scan"]), flush=True)
        if args.gui:
            results["gui"] = gui_check(root, kinds, args.explain)
            print("window scan:", json.dumps(results["gui"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
