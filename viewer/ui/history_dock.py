"""History dock: the stored analyses (newest first), searchable; double-click reopens one.

Reopening emits the entry and its stored overlays (each declared segment's mask and the
heatmap, PNG blobs), with the masks of the segmenters' entries of the same run and image when
the entry has none (a classifier's heatmap is shown over the masks it was measured against);
the wiring opens the image and shows them. A history database that could not be read and was moved aside
is reported here (and in the status bar), never silently.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView, QHBoxLayout, QLabel, QLineEdit, QPushButton, QTableWidget,
    QTableWidgetItem, QVBoxLayout, QWidget,
)

from viewer.services.analysis_types import Overlay

COLUMNS = ("When", "File", "Model", "Version", "Status", "Label", "Confidence", "Band", "Forced",
           "Caution")


class HistoryPanel(QWidget):
    """Lists ``HistoryStore.entries``; ``sig_entry_opened(entry, overlays)`` on reopen, with
    ``overlays`` a list of :class:`~viewer.services.analysis_types.Overlay`."""

    sig_entry_opened = Signal(object, object)

    def __init__(self, store_fn: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("historyPanel")
        self.store_fn = store_fn  # () -> HistoryStore | None (opened lazily)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setObjectName("historySearch")
        self.search.setPlaceholderText("Search file, image id, model or label")
        self.search.setClearButtonEnabled(True)
        self.refresh_button = QPushButton("Refresh")
        self.open_button = QPushButton("Reopen")
        row.addWidget(self.search, 1)
        row.addWidget(self.refresh_button)
        row.addWidget(self.open_button)
        layout.addLayout(row)
        self.message = QLabel("")
        self.message.setObjectName("historyMessage")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #b00;")
        self.message.setVisible(False)
        layout.addWidget(self.message)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("historyTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        layout.addWidget(self.table, 1)
        self.entries: list[Any] = []
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(200)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self.reopen_selected)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.reopen(row))

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def refresh(self) -> None:
        """Reload the newest entries matching the search text (at most 500)."""
        store = self.store_fn()
        if store is None:
            self.entries = []
        else:
            self.entries = store.entries(text=self.search.text().strip() or None, limit=500)
        self.table.setRowCount(len(self.entries))
        for row, e in enumerate(self.entries):
            conf = "" if e.confidence is None else f"{100 * e.confidence:.1f}%"
            values = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.created)),
                      e.source.rsplit("/", 1)[-1], e.model_id, e.model_version, e.status, e.label,
                      conf, e.band, "forced" if e.forced else "",
                      "\u26a0 " + e.caution if e.caution else "")
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                if col == 1:
                    item.setToolTip(e.source)
                elif col == len(values) - 1 and e.caution:
                    item.setToolTip(e.caution)
                self.table.setItem(row, col, item)

    def reopen_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.reopen(rows[0].row())

    def reopen(self, row: int) -> None:
        """Emit the entry of ``row`` with its stored overlays."""
        if not 0 <= row < len(self.entries):
            return
        entry = self.entries[row]
        store = self.store_fn()
        overlays: list[Overlay] = []
        if store is not None:
            overlays = [Overlay(o.kind, entry.model_id, o.label, o.array, o.role or None)
                        for o in store.stored_overlays(entry.id)]
            if not any(o.kind == "mask" for o in overlays):
                # The masks come from the segmenters' entries of the same run and image.
                for other in store.entries(image_id=entry.image_id, run_id=entry.run_id):
                    if other.has_mask and other.id != entry.id:
                        overlays += [Overlay(o.kind, other.model_id, o.label, o.array,
                                             o.role or None)
                                     for o in store.stored_overlays(other.id) if o.kind == "mask"]
        self.sig_entry_opened.emit(entry, overlays)


