"""Runs analyses off the GUI thread and hands the results to the GUI (no widgets here).

An inference :class:`TaskBridge` of its own (separate from the I/O pool) runs the jobs: one
exclusive ``"analysis"`` channel for the image on screen (a newer request cancels the older
one through its :class:`CancelToken`, which terminates the onnxruntime run in flight; a result
for an image no longer shown is dropped), and a ``"batch"`` channel that streams a folder through
:meth:`AnalysisService.iter_batch` on a small inference thread pool. Every analysis is stored in
the :class:`HistoryStore` on the worker.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, Signal

from viewer.core.radiograph import Radiograph
from viewer.services.ai_session import AiSession
from viewer.services.analysis import AnalysisService
from viewer.services.analysis_inputs import input_from_radiograph, input_from_record
from viewer.services.analysis_types import AnalysisResult
from viewer.services.history import HistoryStore
from viewer.services.tasks import CancelToken, ProgressFn, background_priority
from viewer.ui.task_bridge import TaskBridge, TaskRequest

ANALYSIS_CHANNEL = "analysis"
BATCH_CHANNEL = "batch"
HISTORY_CHANNEL = "history"


class AnalysisController(QObject):
    """Analyses the current image or a batch of records.

    Parameters
    ----------
    service
        The Qt-free analysis service (registry + sessions).
    history_path
        SQLite file of the history; opened on first use (tests inject a temporary path).
    batch_workers
        Images analysed at once in a batch. Each run already uses the sessions' 2 intra-op
        threads; on a 2-core machine 1 worker gave the same images/s as 2 with far shorter
        GUI-thread stalls (bench/gui_batch.py: 70 ms vs 90-240 ms worst case, p99 6 vs 10 ms).
    """

    sig_result_ready = Signal(object, object)  # record, AnalysisResult (current image)
    sig_batch_result_ready = Signal(object, object)  # record, AnalysisResult | str (error)
    sig_analysis_failed = Signal(object, str)  # record, message
    sig_batch_progressed = Signal(int, int)
    sig_batch_finished = Signal(int, int, bool)  # done, errors, cancelled
    sig_history_changed = Signal()
    sig_message_posted = Signal(str)

    def __init__(self, service: AnalysisService, history_path: Path | None,
                 batch_workers: int = 1, parent: QObject | None = None,
                 session: AiSession | None = None) -> None:
        super().__init__(parent)
        self.service = service
        # The results per image and the image on screen (Qt-free, services.ai_session).
        self.session = session if session is not None else AiSession()
        self.history_path = history_path
        self._history: HistoryStore | None = None
        # Inference threads run at a lower priority than the GUI thread (as QThread's
        # LowPriority would): on a busy 2-core machine the GUI thread otherwise waited up to
        # ~100 ms for a core behind them. onnxruntime's own threads inherit it.
        self._bridge_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="radview-ai",
                                               initializer=background_priority)
        for _ in range(2):  # start the threads now, not on the GUI thread's first submit
            self._bridge_pool.submit(time.sleep, 0.01)
        self.bridge = TaskBridge(self._bridge_pool, parent=self)
        self._pool = ThreadPoolExecutor(max_workers=batch_workers,
                                        thread_name_prefix="radview-infer",
                                        initializer=background_priority)
        self._request = 0
        self._request_record: Any = None
        self._batch_request = 0
        self._batch_out: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._batch_counts = [0, 0]
        self._history_lock = threading.Lock()
        self._messages: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.bridge.sig_task_finished.connect(self._on_bridge_task_finished)
        self.bridge.sig_task_failed.connect(self._on_bridge_task_failed)
        self.bridge.sig_task_cancelled.connect(self._on_bridge_task_cancelled)
        self.bridge.sig_task_progressed.connect(self._on_bridge_task_progressed)

    # -- history ---------------------------------------------------------------------------
    @property
    def history(self) -> HistoryStore | None:
        """The history store once opened (it is opened on a worker: opening and checking an
        SQLite file took ~200 ms, too long for the GUI thread)."""
        return self._history

    def open_history(self) -> int:
        """Open the history database in the background (``sig_history_changed`` when ready)."""
        return self.bridge.submit(TaskRequest(HISTORY_CHANNEL, self._store, with_progress=False))

    def _store(self) -> HistoryStore | None:
        """Worker side: the store, opened on first use; its messages go to the GUI queue."""
        with self._history_lock:
            if self._history is None and self.history_path is not None:
                store = HistoryStore(self.history_path)
                for message in store.messages:
                    self._messages.put(message)
                self._history = store
            return self._history

    def _post_messages(self) -> None:
        while True:
            try:
                message = self._messages.get_nowait()
            except queue.Empty:
                return
            self.sig_message_posted.emit(message)

    # -- current image ---------------------------------------------------------------------
    @property
    def current_record(self) -> Any:
        """The record on screen (the session's)."""
        return self.session.current_record

    @property
    def current_result(self) -> AnalysisResult | None:
        """The full result (with arrays) of the image on screen, once analysed."""
        return self.session.current_result

    @property
    def results(self) -> dict[Any, AnalysisResult]:
        """Record key -> result of every analysed image (arrays dropped)."""
        return self.session.results

    def set_current(self, record: Any) -> None:
        """The image on screen changed: forget the shown result, cancel its analysis."""
        if self.session.show(record) and self._request:
            self.bridge.cancel(self._request)
            self._request = 0

    def analyse(self, record: Any, rg: Radiograph, *, force: bool = False) -> int:
        """Analyse the displayed radiograph of ``record`` (``force``: run out-of-scope models
        anyway, marked as forced). Returns the request id."""
        self.session.show(record)
        source = getattr(record, "source", None) or rg.source  # InstanceRecord.source
        plain = getattr(record, "kind", "dicom") != "dicom"
        self._request_record = record
        self._request = self.bridge.submit(TaskRequest(
            ANALYSIS_CHANNEL, _analyse_one, (self.service, self._store, rg, source, plain, force)))
        return self._request

    def cancel(self) -> None:
        """Cancel the current image's analysis and any batch."""
        self.bridge.cancel_channel(ANALYSIS_CHANNEL)
        self.bridge.cancel_channel(BATCH_CHANNEL)
        self._request = 0

    # -- batches ---------------------------------------------------------------------------
    def analyse_batch(self, records: Sequence[Any], *, force: bool = False,
                      loader: Callable[[Any], Any] = input_from_record) -> int:
        """Analyse ``records`` (results arrive through ``sig_batch_result_ready``)."""
        self._batch_counts = [0, 0]
        self._batch_request = self.bridge.submit(TaskRequest(
            BATCH_CHANNEL, self._run_batch, (tuple(records), force, loader)))
        return self._batch_request

    def batch_running(self) -> bool:
        return bool(self._batch_request)

    def _run_batch(self, records: tuple[Any, ...], force: bool, loader: Callable[[Any], Any], *,
                   cancel: CancelToken, progress: ProgressFn) -> tuple[int, int]:
        """Worker side: stream the batch, store each result, queue it for the GUI."""
        history = self._store()
        run_id = history.new_run(f"batch of {len(records)}") if history is not None else 0
        def on_analysed(_inp: Any, result: AnalysisResult) -> None:
            if history is not None:
                history.record(run_id, result, overlays=True)

        done = errors = 0
        for record, value in self.service.iter_batch(
                records, loader, self._pool, cancel=cancel, progress=progress, in_flight=3,
                keep_arrays=False, on_analysed=on_analysed, force=force):
            done += 1
            if isinstance(value, BaseException):
                errors += 1
                message = getattr(value, "message", None) or str(value) or type(value).__name__
                self._batch_out.put((record, message))
            else:
                self._batch_out.put((record, value))
        return done, errors

    def _drain_batch(self) -> None:
        while True:
            try:
                record, value = self._batch_out.get_nowait()
            except queue.Empty:
                return
            self._batch_counts[0] += 1
            if isinstance(value, AnalysisResult):
                self.session.add_batch(record, value)
            else:
                self._batch_counts[1] += 1
            self.sig_batch_result_ready.emit(record, value)

    # -- slots -----------------------------------------------------------------------------
    def _on_bridge_task_finished(self, channel: str, rid: int, result: object) -> None:
        self._post_messages()
        if channel == HISTORY_CHANNEL:
            self.sig_history_changed.emit()
        elif channel == ANALYSIS_CHANNEL and rid == self._request:
            self._request = 0
            record = self._request_record
            if record is not self.current_record:
                return  # stale: another image is on screen now
            assert isinstance(result, AnalysisResult)
            self.session.add(record, result)
            self.sig_result_ready.emit(record, result)
            self.sig_history_changed.emit()
        elif channel == BATCH_CHANNEL and rid == self._batch_request:
            self._batch_request = 0
            self._drain_batch()
            assert isinstance(result, tuple)
            done, errors = result
            self.sig_batch_finished.emit(done, errors, False)
            self.sig_history_changed.emit()

    def _on_bridge_task_failed(self, channel: str, rid: int, message: str) -> None:
        self._post_messages()
        if channel == HISTORY_CHANNEL:
            self.sig_message_posted.emit(f"The analysis history cannot be opened: {message}")
        elif channel == ANALYSIS_CHANNEL and rid == self._request:
            self._request = 0
            self.sig_analysis_failed.emit(self._request_record, message)
        elif channel == BATCH_CHANNEL and rid == self._batch_request:
            self._batch_request = 0
            self._drain_batch()
            self.sig_message_posted.emit(f"Batch analysis failed: {message}")
            self.sig_batch_finished.emit(self._batch_counts[0], self._batch_counts[1], False)

    def _on_bridge_task_cancelled(self, channel: str, rid: int) -> None:
        self._post_messages()
        if channel == BATCH_CHANNEL and rid == self._batch_request:
            self._batch_request = 0
            self._drain_batch()
            self.sig_batch_finished.emit(self._batch_counts[0], self._batch_counts[1], True)
            self.sig_history_changed.emit()
        elif channel == ANALYSIS_CHANNEL and rid == self._request:
            self._request = 0

    def _on_bridge_task_progressed(self, channel: str, rid: int, done: int, total: int) -> None:
        self._post_messages()
        if channel == BATCH_CHANNEL and rid == self._batch_request:
            self._drain_batch()
            self.sig_batch_progressed.emit(done, total)

    # -- shutdown --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel everything, join the threads, close the history (idempotent)."""
        self.bridge.shutdown()
        self._bridge_pool.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._history is not None:
            self._history.close()
            self._history = None
            self.history_path = None


def _analyse_one(service: AnalysisService, store: Callable[[], HistoryStore | None],
                 rg: Radiograph, source: str, plain: bool, force: bool, *, cancel: CancelToken,
                 progress: ProgressFn) -> AnalysisResult:
    """Worker side: display image -> gate -> models -> heatmaps; stored in the history."""
    inp = input_from_radiograph(rg, source, plain=plain)
    progress(0, 1)
    result = service.analyse(inp, force=force, cancel=cancel)
    history = store()
    if history is not None:
        history.record(history.new_run("image"), result, overlays=True)
    progress(1, 1)
    return result
