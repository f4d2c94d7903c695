"""End to end: ``radview --demo`` headless on the real shared DICOM folder, as ``make run``
does on a machine without a display."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_headless_writes_screenshot_and_summary(shared_dicom: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "viewer", "--demo", str(shared_dicom), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo-summary.json" in proc.stdout
    summary = json.loads((out / "demo-summary.json").read_text())
    expected_files = sum(1 for p in shared_dicom.rglob("*.dcm"))
    assert summary["files_scanned"] == expected_files
    assert summary["patients"] >= 3 and summary["studies"] >= summary["patients"]
    assert summary["series"] >= summary["studies"]
    displayed = {d["file"]: d for d in summary["displayed"]}
    for name in ("RG1_J2KI.dcm", "RG2_RLE.dcm", "RG3_JLSL.dcm", "966_fixed.dcm"):
        entry = displayed[name]
        assert entry["window"]["width"] > 0 and entry["size"][0] > 1000
    assert displayed["RG1_J2KI.dcm"]["photometric"] == "MONOCHROME1"
    problems = {p["file"]: p for p in summary["problems"]}
    assert "pylibjpeg-libjpeg" in (problems["RG2_JPLY_fixed.dcm"]["advice"]
                                   + problems["RG2_JPLY_fixed.dcm"]["reason"])
    assert {"966.dcm", "RG3_JPLY.dcm"} <= set(problems)
    assert summary["notice"].startswith("Research use only")
    image = QImage(str(out / "demo-screenshot.png"))
    assert not image.isNull() and image.width() >= 800 and image.height() >= 600
    # the canvas shows a radiograph, not a blank window: plenty of distinct grey levels
    image = image.convertToFormat(QImage.Format.Format_Grayscale8)
    buf = np.frombuffer(image.constBits(), dtype=np.uint8,
                        count=image.height() * image.bytesPerLine())
    assert len(np.unique(buf)) > 100
    # the demo uses throwaway settings: this user's layout and recent files are not touched
    assert not any((tmp_path / "config").rglob("*")), list((tmp_path / "config").rglob("*"))
