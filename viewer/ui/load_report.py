"""Load report: every file that is not an image, cannot be parsed or cannot be decoded.

One row per :class:`~viewer.dicom.scan.LoadProblem` with the file, the reason, the (0002,0010)
Transfer Syntax UID when a codec is at fault, and what would decode it. Filled during scans and
when an image fails to decode on display; it never interrupts the user with a modal dialog.
"""

from __future__ import annotations

from typing import Any, Iterable

from PySide6.QtCore import Qt, Signal
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

COLUMNS = ("File", "Reason", "Transfer syntax", "Advice")


class LoadReport(QWidget):
    """Table of load problems; emits ``sig_count_changed`` so the window can badge its dock."""

    sig_count_changed = Signal(int)

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
        for col, width in enumerate((260, 320, 200)):
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

    def add_problems(self, problems: Iterable[Any]) -> int:
        """Append problems (objects with ``path``, ``reason``, ``transfer_syntax``, ``advice``
        and optionally ``member``); duplicates of (file, reason) are skipped. Returns how many
        were added."""
        added = 0
        self.table.setUpdatesEnabled(False)
        try:
            for problem in problems:
                name = _display_name(problem)
                if name in self._seen:
                    continue  # one row per file: the scan's reason is the most precise
                self._seen.add(name)
                row = self.table.rowCount()
                self.table.insertRow(row)
                cells = (name, problem.reason, problem.transfer_syntax, problem.advice)
                tips = (name,) + cells[1:]
                for col, text in enumerate(cells):
                    shown = _short(name) if col == 0 else str(text or "")
                    item = QTableWidgetItem(shown)
                    item.setToolTip(str(tips[col] or ""))
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                    self.table.setItem(row, col, item)
                added += 1
        finally:
            self.table.setUpdatesEnabled(True)
        if added:
            self._update_summary()
        return added

    def clear(self) -> None:
        self.table.setRowCount(0)
        self._seen.clear()
        self._update_summary()

    def count(self) -> int:
        return self.table.rowCount()

    def rows(self) -> list[tuple[str, ...]]:
        """Table contents as text (used by tests and the demo summary)."""
        out = []
        for row in range(self.table.rowCount()):
            out.append(tuple(self.table.item(row, c).toolTip() for c in range(len(COLUMNS))))
        return out

    def _update_summary(self) -> None:
        n = self.table.rowCount()
        self.summary.setText("No problems." if n == 0 else f"{n} file(s) could not be shown.")
        self.sig_count_changed.emit(n)


def _display_name(problem: Any) -> str:
    member = getattr(problem, "member", None)
    return f"{problem.path}!{member}" if member else str(problem.path)


def _short(name: str) -> str:
    """Last two path components: enough to find the file, short enough for the column."""
    parts = name.replace("\\", "/").rsplit("/", 2)
    return "/".join(parts[-2:]) if len(parts) > 1 else name
