"""Concurrency: batches that are cancelled, interrupted by a new folder, a closed window or a
change of models leave no orphaned threads, no stale results and no partial history entries.

Services level (``AnalysisService.iter_batch`` + ``HistoryStore`` + ``CancelToken``) and the
window's AI controller (``viewer.ui.ai_features``), with the tiny generated models of
``tests/inference/tiny_models.py``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import dicom_factory
from tests.inference.tiny_models import make_model_set
from viewer.inference.registry import ModelRegistry
from viewer.inference.sessions import SessionPool
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_inputs import input_from_record
from viewer.services.analysis_types import AnalysisResult
from viewer.services.history import HistoryStore
from viewer.services.library import scan_paths
from viewer.services.tasks import CancelToken


def _chest_like(seed: int, rows: int = 96, cols: int = 112) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(600, 3000, (rows, cols)).astype(np.uint16)
    img[rows // 5: -rows // 5, cols // 8: cols // 2 - 4] = 300
    img[rows // 5: -rows // 5, cols // 2 + 4: -cols // 8] = 350
    return img


def _folder(root: Path, n: int, tag: str) -> Path:
    for i in range(n):
        dicom_factory.write_dicom(root / f"{tag}{i:03d}.dcm", _chest_like(i), bits_stored=12,
                                  BodyPartExamined="CHEST", InstanceNumber=i + 1,
                                  StudyInstanceUID=f"1.2.826.0.1.3680043.8.498.7.{len(tag)}",
                                  SeriesInstanceUID=f"1.2.826.0.1.3680043.8.498.7.{len(tag)}.1")
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("conc_models")
    return make_model_set(base / "chest"), make_model_set(base / "knee", region="knee")


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.is_alive() and t.ident is not None}


def _wait_threads(before: set[int], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        extra = [t.name for t in threading.enumerate() if t.is_alive() and t.ident not in before]
        if not extra:
            return []
        time.sleep(0.05)
    return extra


def _history_complete(db: Path, n_models: int) -> tuple[int, list[tuple[Any, ...]]]:
    """(images stored, groups whose model count is not ``n_models``) after integrity_check."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        groups = conn.execute("SELECT run_id, image_id, COUNT(*) FROM entries "
                              "GROUP BY run_id, image_id").fetchall()
    finally:
        conn.close()
    return len(groups), [g for g in groups if g[2] != n_models]


# ---------------------------------------------------------------------------------------------
# Services level
# ---------------------------------------------------------------------------------------------


def test_cancelled_batch_leaves_no_threads_and_no_partial_history(
        tmp_path: Path, models: tuple[Path, Path]) -> None:
    chest, _ = models
    records = scan_paths([str(_folder(tmp_path / "a", 30, "a"))], workers=1).index.records()
    n_models = len(ModelRegistry([chest]).available())
    before = _threads()
    service = AnalysisService(ModelRegistry([chest]), SessionPool(1))
    token = CancelToken()
    db = tmp_path / "h.sqlite"
    yielded: list[tuple[Any, AnalysisResult]] = []
    with HistoryStore(db) as history, ThreadPoolExecutor(2, thread_name_prefix="radview-test") as pool:
        run = history.new_run("cancelled batch")
        for record, value in service.iter_batch(
                records, input_from_record, pool, cancel=token, in_flight=3,
                on_analysed=lambda _i, r: history.record(run, r)):
            assert isinstance(value, AnalysisResult), value
            yielded.append((record, value))
            if len(yielded) == 5:
                token.cancel()
    assert 5 <= len(yielded) < len(records)
    # Results belong to the item they are yielded with (no stale or shifted result).
    for record, result in yielded:
        assert result.image_id == record.sop_instance_uid
        assert result.source == record.path
    stored, partial = _history_complete(db, n_models)
    assert partial == [] and len(yielded) <= stored < len(records)
    assert _wait_threads(before) == []


def test_models_swapped_mid_analysis_do_not_mix(tmp_path: Path, models: tuple[Path, Path]) -> None:
    """The UI swaps ``service.registry`` when the models folder changes; an image being analysed
    keeps the registry it started with (gate and models from one folder)."""
    chest, knee = models
    record = scan_paths([str(_folder(tmp_path / "b", 1, "b"))], workers=1).index.records()[0]
    service = AnalysisService(ModelRegistry([chest]), SessionPool(1))
    empty = ModelRegistry([tmp_path / "no_models"])

    class SwappingRegistry(ModelRegistry):
        def gate(self):  # type: ignore[no-untyped-def]
            gate = super().gate()
            service.registry = empty  # the user picked another folder right now
            return gate

    first = SwappingRegistry([chest])
    service.registry = first
    result = service.analyse(input_from_record(record))
    assert {r.model_id for r in result.results} == {m.id for m in first.available()}
    assert service.registry is empty  # the swap did happen during the analysis


# ---------------------------------------------------------------------------------------------
# The window's AI controller
# ---------------------------------------------------------------------------------------------


def _start_batch(qtbot: Any, window: Any, folder: Path) -> Any:
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.open_paths([str(folder)])
    ctl = window.ai.controller
    with qtbot.waitSignal(ctl.sig_batch_progressed, timeout=20000):
        window.ai.analyse_shown()
    return ctl



def test_new_folder_mid_batch_shows_no_stale_result(qtbot: Any, ai_window: Any, tmp_path: Path,
                                                    models: tuple[Path, Path]) -> None:
    chest, _ = models
    a = _folder(tmp_path / "A", 30, "a")
    b = _folder(tmp_path / "B", 3, "b")
    before = _threads()
    window = ai_window(chest)
    ctl = _start_batch(qtbot, window, a)
    with qtbot.waitSignal(window.sig_image_displayed, timeout=20000):
        window.open_paths([str(b)])
    qtbot.waitUntil(lambda: not ctl.batch_running(), timeout=60000)
    grid = window.grid.thumb_model
    shown_keys = {r.key for r in grid.records}
    assert shown_keys and all(Path(k[0]).parent == b for k in shown_keys)
    for key in shown_keys & set(grid.badges):  # any badge on B's cells is B's own result
        assert ctl.results[key].source == key[0]
    current = window.images.current
    if ctl.current_result is not None:
        assert ctl.current_result.source == current.path
    window.close()
    window.shutdown()
    assert _wait_threads(before) == []
    stored, partial = _history_complete(tmp_path / "hist" / "h.sqlite",
                                        len(ModelRegistry([chest]).available()))
    assert partial == [] and stored >= 1


def test_close_window_mid_batch_joins_threads(qtbot: Any, ai_window: Any, tmp_path: Path,
                                             models: tuple[Path, Path]) -> None:
    chest, _ = models
    a = _folder(tmp_path / "A", 40, "a")
    before = _threads()
    window = ai_window(chest)
    ctl = _start_batch(qtbot, window, a)
    assert ctl.batch_running()
    t0 = time.perf_counter()
    window.close()
    window.shutdown()
    closed_s = time.perf_counter() - t0
    assert _wait_threads(before) == []
    assert closed_s < 10.0
    stored, partial = _history_complete(tmp_path / "hist" / "h.sqlite",
                                        len(ModelRegistry([chest]).available()))
    assert partial == [] and stored < 40


def test_models_changed_mid_batch_keep_each_result_consistent(
        qtbot: Any, ai_window: Any, tmp_path: Path, models: tuple[Path, Path]) -> None:
    chest, knee = models
    a = _folder(tmp_path / "A", 24, "a")
    window = ai_window(chest)
    ctl = _start_batch(qtbot, window, a)
    window.ai.set_models_dir(knee)  # mid-run
    qtbot.waitUntil(lambda: not ctl.batch_running(), timeout=60000)
    assert ctl.results
    for result in ctl.results.values():
        assert result.gate is not None
        statuses = {r.status for r in result.results if r.model_id != result.results[0].model_id}
        if result.gate.region == "chest":
            assert "out_of_scope" not in statuses, result
        else:
            assert result.gate.region == "knee" and "ok" not in statuses, result
