"""Hostile files: every malformed input is opened through the viewer's and the CLI's code paths
without a crash, a hang or a memory blow-up, and each refusal has a precise reason.

The corpus (:mod:`tests.robustness.corpus`) is generated in a temporary folder with a fixed
seed. Ceilings: ``TIMEOUT_S`` per file and ``RSS_CEILING_MB`` resident memory per worker
(high-water mark, so a transient gigapixel allocation shows too).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import shared_data_dir
from tests.robustness.corpus import build_corpus
from tests.robustness.harness import REPO_ROOT, Outcome, reason_class, run_items, summary, vague_reasons

TIMEOUT_S = 20.0
RSS_CEILING_MB = 1536.0
FULL_CORPUS = 2000


def _shared() -> Path | None:
    path = shared_data_dir()
    return path if (path / "dicom").is_dir() else None


def _check(outcomes: list[Outcome]) -> dict[str, object]:
    failures = [o for o in outcomes if o.outcome in ("crash", "hang", "died")]
    assert not failures, "\n".join(f"{o.outcome}: {o.path} {o.reasons} {o.trace}" for o in failures[:10])
    silent = [o for o in outcomes if o.outcome in ("refused", "partial") and not o.reasons]
    assert not silent, f"refused without a reason: {[o.path for o in silent[:10]]}"
    vague = [(o.path, vague_reasons(o)) for o in outcomes if vague_reasons(o)]
    assert not vague, f"vague reasons: {vague[:10]}"
    unclassified = [r for o in outcomes for r in o.reasons if reason_class(r) == "other"]
    assert not unclassified, f"reasons matching no known class: {unclassified[:10]}"
    worst = max(o.max_rss_mb for o in outcomes)
    assert worst < RSS_CEILING_MB, f"worker peaked at {worst:.0f} MiB"
    by_family: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_family.setdefault(o.family, []).append(o)
    # Size claims are refused before decoding, with the limit named.
    for family in ("gigapixel-claim", "png-bomb"):
        for o in by_family.get(family, []):
            assert o.outcome != "ok" or family == "png-bomb" and not o.reasons, o
            if o.outcome == "refused" and any("megapixel" in r for r in o.reasons):
                assert o.seconds < 5.0, o
    assert any("megapixel" in r for o in by_family.get("png-bomb", []) for r in o.reasons)
    for o in by_family.get("zip-traversal", []):
        assert any("unsafe member name" in r for r in o.reasons), o
    for o in by_family.get("zip-ratio", []):
        assert any("zip bomb guard" in r for r in o.reasons), o
    for o in by_family.get("zero-length", []):
        assert o.outcome == "refused", o
    return summary(outcomes)


def _run(root: Path, n: int, seed: int) -> tuple[dict[str, object], float]:
    items = build_corpus(root / "corpus", _shared(), n=n, seed=seed)
    assert len(items) >= n
    start = time.perf_counter()
    outcomes = run_items([(str(i.path), i.family) for i in items], root / "thumbs", workers=2,
                         timeout_s=TIMEOUT_S)
    elapsed = time.perf_counter() - start
    assert len(outcomes) == len(items)
    return _check(outcomes), elapsed


def test_hostile_subset(tmp_path: Path) -> None:
    """A fast 120-file slice of the corpus (every family represented)."""
    report, elapsed = _run(tmp_path, 120, seed=7)
    assert report["outcomes"].get("refused", 0) > 50  # type: ignore[union-attr]
    assert len(report["families"]) >= 25  # type: ignore[arg-type]
    print(json.dumps({"elapsed_s": round(elapsed, 1), **report}))


@pytest.mark.slow
def test_hostile_full_corpus(tmp_path: Path) -> None:
    """The full corpus: >= 2,000 files; the counts go to docs/ROBUSTNESS.md."""
    report, elapsed = _run(tmp_path, FULL_CORPUS, seed=20261121)
    print(json.dumps({"elapsed_s": round(elapsed, 1), **report}, indent=1))
    out = os.environ.get("RADVIEW_ROBUSTNESS_REPORT")
    if out:
        Path(out).write_text(json.dumps({"elapsed_s": round(elapsed, 1), **report}, indent=1))


@pytest.mark.slow
def test_cli_on_hostile_subset(tmp_path: Path) -> None:
    """``radview analyze`` over a folder of hostile files: no traceback, a row or a "skipped"
    line with a reason for every file, exit status 1 (some files failed), and a complete CSV."""
    items = build_corpus(tmp_path / "corpus", _shared(), n=60, seed=11)
    out = tmp_path / "results" / "out.csv"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "viewer", "analyze", str(tmp_path / "corpus"), "--out", str(out),
         "--workers", "1"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    named = {Path(r["file"].split("!")[0]).name for r in rows}
    skipped = proc.stderr.count("skipped ")
    assert rows or skipped
    for row in rows:
        assert row["status"] in ("ok", "out_of_scope", "outside_data", "error"), row
        if row["status"] == "error":
            assert len(row["reason"]) > 12, row
    # Every top-level corpus file is accounted for: a CSV row or a skipped line.
    for item in items:
        # (a DICOMDIR inside a walked folder is skipped; the folder's own files are scanned)
        if item.path.is_file() and item.family not in ("symlink-loop", "dicomdir"):
            assert item.path.name in named or item.path.name in proc.stderr, item
