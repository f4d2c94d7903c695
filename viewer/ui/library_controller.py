"""Opening files: runs background scans and keeps the list of image records.

Holds no widgets: the main window connects its signals to the browser, the load report and the
status bar. Each scan is a :class:`~viewer.ui.task_bridge.TaskRequest` on the "scan" channel; a
new scan of the same paths cancels the running one, and results of stale scans are dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Any
from collections.abc import Callable, Iterable

from PySide6.QtCore import QObject, QTimer, Signal

from viewer.state.browse_tree import TreeNode, build_tree
from viewer.ui.task_bridge import TaskBridge, TaskRequest

SCAN_CHANNEL = "scan"
ScanFn = Callable[..., Any]


def index_records(index: Any) -> list[Any]:
    """All instance records of a StudyIndex, in index order."""
    for name in ("records", "instances"):
        attr = getattr(index, name, None)
        if callable(attr):
            return list(attr())
        if attr is not None:
            return list(attr)
    return list(index)


@dataclass(frozen=True)
class ScanOutcome:
    """What a scan job hands back: the scan result, the merged index and the browser tree."""

    result: Any
    index: Any
    tree: tuple[TreeNode, ...]


def scan_job(
    scan_fn: ScanFn, paths: tuple[str, ...], previous: Any, *, cancel: Any, progress: Any
) -> ScanOutcome:
    """Worker side of a scan (no Qt): scan, merge with what was open, build the tree."""
    result = scan_fn(paths, cancel=cancel, progress=progress)
    index = result.index
    if previous is not None:
        merged = type(index)(index_records(previous))
        merged.merge(index)
        index = merged
    cancel.raise_if_cancelled()
    return ScanOutcome(result, index, build_tree(index))


class LibraryController(QObject):
    """Scans paths in the background and accumulates what was found.

    Signals
    -------
    sig_scan_started(list)            paths being scanned
    sig_scan_progressed(int, int)     files done, total
    sig_scan_finished(object)         the ScanResult of the scan
    sig_tree_changed(object)          browser rows (TreeNode tuple) of everything opened
    sig_problems_found(list)          LoadProblems of the scan
    sig_scan_failed(str)              a failure message
    """

    sig_scan_started = Signal(list)
    sig_scan_progressed = Signal(int, int)
    sig_scan_finished = Signal(object)
    sig_tree_changed = Signal(object)
    sig_problems_found = Signal(object)  # a list (Signal(list) copies it element by element)
    sig_scan_failed = Signal(str)

    def __init__(self, bridge: TaskBridge, scan_fn: ScanFn, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.scan_fn = scan_fn
        self.records: list[Any] = []
        self.index: Any = None
        self.tree: tuple[TreeNode, ...] = ()
        self.files_seen = 0
        self.problem_count = 0
        self.last_result: Any = None
        self._request_id = 0
        bridge.sig_task_finished.connect(self._on_bridge_task_finished)
        bridge.sig_task_failed.connect(self._on_bridge_task_failed)
        bridge.sig_task_progressed.connect(self._on_bridge_task_progressed)
        bridge.sig_task_cancelled.connect(self._on_bridge_task_cancelled)

    @property
    def busy(self) -> bool:
        return self._request_id != 0

    def open_paths(self, paths: Iterable[str], replace: bool = True) -> int:
        """Scan ``paths`` (folders recursively, DICOMDIR, files, zips, PNG/JPEG) in the
        background; ``replace`` drops what was open before. Returns the request id."""
        clean = [os.path.abspath(os.path.expanduser(p)) for p in paths if p]
        if not clean:
            return 0
        if replace:
            self.records = []
            self.index = None
            self.files_seen = 0
            self.problem_count = 0
        job = partial(scan_job, self.scan_fn)
        self._request_id = self.bridge.submit(
            TaskRequest(SCAN_CHANNEL, job, (tuple(clean), self.index), exclusive=True)
        )
        self.sig_scan_started.emit(clean)
        return self._request_id

    def cancel(self) -> None:
        if self._request_id:
            self.bridge.cancel(self._request_id)

    # -- slots -----------------------------------------------------------------------------
    def _on_bridge_task_progressed(self, channel: str, rid: int, done: int, total: int) -> None:
        if channel == SCAN_CHANNEL and rid == self._request_id:
            self.sig_scan_progressed.emit(done, total)

    def _on_bridge_task_finished(self, channel: str, rid: int, result: object) -> None:
        if channel != SCAN_CHANNEL or rid != self._request_id:
            return
        self._request_id = 0
        assert isinstance(result, ScanOutcome)
        outcome, result = result, result.result
        self.last_result = result
        self.index = outcome.index
        self.tree = outcome.tree
        self.records = [r for p in outcome.tree for r in p.records]
        self.files_seen += int(getattr(result, "files_seen", 0))
        problems: list[Any] = list(getattr(result, "problems", ()))
        self.problem_count += len(problems)
        # The Load Report, the browser tree and the "finished" handlers each get their own
        # event-loop turn: on a 20,000-file scan they take tens of milliseconds each, and
        # running them in the turn that delivered the result stalled the window
        # (bench.stress --gui).
        steps: list[Callable[[], Any]] = []
        if problems:
            steps.append(partial(self.sig_problems_found.emit, problems))
        steps.append(lambda: self.sig_tree_changed.emit(self.tree))
        steps.append(partial(self.sig_scan_finished.emit, result))
        QTimer.singleShot(0, self, partial(self._run_in_turns, steps))

    def _run_in_turns(self, steps: list[Callable[[], Any]]) -> None:
        steps[0]()
        if len(steps) > 1:
            QTimer.singleShot(0, self, partial(self._run_in_turns, steps[1:]))

    def _on_bridge_task_failed(self, channel: str, rid: int, message: str) -> None:
        if channel == SCAN_CHANNEL and rid == self._request_id:
            self._request_id = 0
            self.sig_scan_failed.emit(message)

    def _on_bridge_task_cancelled(self, channel: str, rid: int) -> None:
        if channel == SCAN_CHANNEL and rid == self._request_id:
            self._request_id = 0
            self.sig_scan_failed.emit("Scan cancelled")
