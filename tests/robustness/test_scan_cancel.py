"""Cancelling a scan at a random point and scanning again gives the same index and report.

A 2,000-file folder (5 % corrupt, 5 % not DICOM, from :func:`bench.stress.generate_mixed`) is
scanned once for reference; then, for several seeded random points, a scan is cancelled from
its progress callback once that many files are done, and a fresh scan must equal the
reference: the same records (all attributes) and the same problems. Both the single-thread
path and the process-pool path (a warm pool, as the window passes one) are exercised.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bench.stress import generate_mixed
from viewer.services.library import ScanResult, scan_paths
from viewer.services.tasks import CancelToken, Cancelled

FILES = 2000


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("cancel") / "folder"
    return root, generate_mixed(root, FILES, seed=3)


def _signature(result: ScanResult) -> tuple[list[object], list[tuple[str, str | None, str]]]:
    records = sorted(result.index.records(), key=lambda r: r.key)
    problems = sorted((p.path, p.member, p.reason) for p in result.problems)
    return records, problems


def _cancelled_at(root: Path, at: int, **kw: object) -> int:
    token = CancelToken()
    seen = [0]

    def progress(done: int, total: int) -> None:
        seen[0] = done
        if done >= at:
            token.cancel()

    with pytest.raises(Cancelled):
        scan_paths([str(root)], cancel=token, progress=progress, **kw)  # type: ignore[arg-type]
    return seen[0]


def test_cancel_then_rescan_serial(folder: tuple[Path, dict[str, list[str]]]) -> None:
    root, kinds = folder
    reference = scan_paths([str(root)], workers=1)
    assert len(reference.index) == len(kinds["good"])
    assert {p.path for p in reference.problems} == set(kinds["corrupt"]) | set(kinds["non_dicom"])
    rng = np.random.default_rng(42)
    for at in rng.integers(1, FILES, size=3):
        done = _cancelled_at(root, int(at), workers=1)
        assert done < FILES  # it did stop early
        again = scan_paths([str(root)], workers=1)
        assert _signature(again) == _signature(reference)


@pytest.mark.slow
def test_cancel_then_rescan_with_warm_pool(folder: tuple[Path, dict[str, list[str]]]) -> None:
    root, _kinds = folder
    reference = scan_paths([str(root)], workers=1)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        list(pool.map(abs, [1, 2]))  # warm: the workers are up, as in the window
        at = int(np.random.default_rng(7).integers(200, FILES - 200))
        _cancelled_at(root, at, workers=2, executor=pool)
        again = scan_paths([str(root)], workers=2, executor=pool)
    assert _signature(again) == _signature(reference)
