"""Load report: every file that is not an image, cannot be parsed or cannot be decoded.

One row per file with the reason, the (0002,0010) Transfer Syntax UID when a codec is at fault,
what would decode it, and what found the problem: the scan (not DICOM, no pixels, no decoder:
:class:`~viewer.dicom.scan.LoadProblem`, never listed as images) or a later decode (a thumbnail
or the display of a listed image that fails, e.g. damaged pixel data). The summary line counts
both kinds separately, so it agrees with the status bar's "problems found by the scan". It
never interrupts the user with a modal dialog.
"""

from __future__ import annotations

from typing import Any
from collections.abc import Iterable

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from viewer.dicom.scan import source_text

COLUMNS = ("File", "Reason", "Transfer syntax", "Advice", "Found by")
SCAN = "scan"


class LoadReport(QWidget):
    """Table of load problems; emits ``sig_count_changed`` so the window can badge its dock."""

    sig_count_changed = Signal(int)
    # Rows inserted per event-loop turn: 250 rows took 15 ms of the 55 ms scan-finished turn
    # at the end of a 20,000-file scan with 2,000 bad files (bench/stress.py --gui).
    CHUNK = 100

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("loadReportTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        for col, width in enumerate((260, 320, 200, 260)):
            self.table.setColumnWidth(col, width)
        self.summary = QLabel("No problems.")
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table)
        self._seen: set[str] = set()
        self._pending: list[tuple[str, Any]] = []
        self.scan_count = 0
        self.decode_count = 0

    def add_problems(self, problems: Iterable[Any]) -> int:
        """Append problems (objects with ``path``, ``reason``, ``transfer_syntax``, ``advice``
        and optionally ``member``); duplicates of (file, reason) are skipped. Returns how many
        were added.

        Up to ``CHUNK`` rows are inserted at once; the rest follow in chunks on later turns of
        the event loop, so a scan with thousands of bad files never blocks the GUI thread for
        long (2,000 rows took 200-600 ms at once in ``bench/stress.py --gui``).
        """
        fresh = []
        for problem in problems:
            name = _display_name(problem)
            if name in self._seen:
                continue  # one row per file: the scan's reason is the most precise
            self._seen.add(name)
            fresh.append((name, problem))
            if getattr(problem, "found_by", SCAN) == SCAN:
                self.scan_count += 1
            else:
                self.decode_count += 1
        if not fresh:
            return 0
        self._pending.extend(fresh)
        self._insert_chunk()
        return len(fresh)

    def pending(self) -> int:
        """Rows accepted but not inserted yet (they follow within a few event-loop turns)."""
        return len(self._pending)

    def _insert_chunk(self) -> None:
        batch = self._pending[:self.CHUNK]
        del self._pending[:self.CHUNK]
        self.table.setUpdatesEnabled(False)
        try:
            first = self.table.rowCount()
            self.table.setRowCount(first + len(batch))
            for row, (name, problem) in enumerate(batch, first):
                cells = (name, problem.reason, problem.transfer_syntax, problem.advice,
                         getattr(problem, "found_by", SCAN))
                tips = (name,) + cells[1:]
                for col, text in enumerate(cells):
                    shown = _short(name) if col == 0 else str(text or "")
                    item = QTableWidgetItem(shown)
                    item.setToolTip(str(tips[col] or ""))
                    self.table.setItem(row, col, item)  # not editable: NoEditTriggers
        finally:
            self.table.setUpdatesEnabled(True)
        self._update_summary()
        if self._pending:
            QTimer.singleShot(0, self._insert_chunk)

    def clear(self) -> None:
        self._pending.clear()
        self.table.setRowCount(0)
        self._seen.clear()
        self.scan_count = self.decode_count = 0
        self._update_summary()

    def count(self) -> int:
        return self.table.rowCount()

    def rows(self) -> list[tuple[str, ...]]:
        """Table contents as text (used by tests and the demo summary)."""
        out = []
        for row in range(self.table.rowCount()):
            items = (self.table.item(row, c) for c in range(len(COLUMNS)))
            out.append(tuple(item.toolTip() if item is not None else "" for item in items))
        return out

    def _update_summary(self) -> None:
        n = self.table.rowCount()
        self.summary.setText(summary_text(self.scan_count, self.decode_count))
        self.sig_count_changed.emit(n)


def summary_text(scan: int, decode: int) -> str:
    """E.g. "4 files with problems: 3 found by the scan (not listed as images), 1 listed image
    failed to decode (thumbnail or display)"."""
    if scan + decode == 0:
        return "No problems."
    parts = []
    if scan:
        parts.append(f"{scan} found by the scan (not listed as images)")
    if decode:
        parts.append(f"{decode} listed image{'s' if decode != 1 else ''} failed to decode "
                     "(thumbnail or display)")
    total = scan + decode
    return f"{total} file{'s' if total != 1 else ''} with problems: " + ", ".join(parts)


def _display_name(problem: Any) -> str:
    """The file as results name it (``path!member`` for a zip member: scan.source_text)."""
    return source_text(str(problem.path), getattr(problem, "member", None))


def _short(name: str) -> str:
    """Last two path components: enough to find the file, short enough for the column."""
    parts = name.replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:]) if len(parts) > 1 else name
